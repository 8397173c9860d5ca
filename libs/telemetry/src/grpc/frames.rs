//! Counting gRPC messages in a body. Each message is a length-prefixed frame
//! (1 flag byte, 4-byte big-endian length, payload), and HTTP/2 DATA frames
//! split them anywhere, so the counter carries its position across chunks.
//! Payload bytes are skipped, never copied.

/// Counts complete messages in a byte stream fed chunk by chunk.
#[derive(Debug, Default, Clone)]
pub(crate) struct FrameCounter {
    /// The prefix of the message being read, while fewer than 5 bytes came.
    prefix: [u8; 5],
    prefix_len: u8,
    /// Payload bytes still to skip; `None` while reading a prefix.
    payload_left: Option<u64>,
}

impl FrameCounter {
    /// Feeds the next chunk; returns how many messages it completed.
    pub(crate) fn push(&mut self, mut data: &[u8]) -> u64 {
        let mut completed = 0;
        while !data.is_empty() {
            match self.payload_left {
                Some(left) => {
                    let take = left.min(data.len() as u64);
                    data = &data[take as usize..];
                    if take == left {
                        self.payload_left = None;
                        completed += 1;
                    } else {
                        self.payload_left = Some(left - take);
                    }
                }
                None => {
                    let have = usize::from(self.prefix_len);
                    let take = (5 - have).min(data.len());
                    self.prefix[have..have + take].copy_from_slice(&data[..take]);
                    data = &data[take..];
                    self.prefix_len += take as u8;
                    if self.prefix_len == 5 {
                        self.prefix_len = 0;
                        let [_, a, b, c, d] = self.prefix;
                        match u32::from_be_bytes([a, b, c, d]) {
                            0 => completed += 1,
                            len => self.payload_left = Some(u64::from(len)),
                        }
                    }
                }
            }
        }
        completed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    #[test]
    fn counts_across_any_split() {
        let stream: Vec<u8> = [3usize, 0, 17, 1, 300].iter().flat_map(|l| message(*l)).collect();
        for chunk in 1..=stream.len() {
            let mut c = FrameCounter::default();
            let n: u64 = stream.chunks(chunk).map(|ch| c.push(ch)).sum();
            assert_eq!(n, 5, "chunk size {chunk}");
        }
    }

    #[test]
    fn an_incomplete_message_is_not_counted() {
        let mut c = FrameCounter::default();
        let m = message(10);
        assert_eq!(c.push(&m[..9]), 0);
        assert_eq!(c.push(&m[9..14]), 0);
        assert_eq!(c.push(&m[14..]), 1);
        assert_eq!(c.push(&message(4)[..3]), 0);
    }
}
