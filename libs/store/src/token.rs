//! The API key format, `gh_<id>_<secret>`, and the hashing of secrets.
//!
//! The id is 80 random bits and public: it names the key in the admin API,
//! the audit trail and logs. The secret is 256 random bits from the operating
//! system's CSPRNG. Both are lower-case base32 (`a-z2-7`), which never contains
//! `_`, so the key splits unambiguously and survives headers, URLs and shells.
//!
//! Only SHA-256 of the secret is stored. A slow password hash (argon2,
//! bcrypt) protects low-entropy secrets from guessing after a database leak;
//! a 256-bit random secret cannot be guessed whatever the hash costs, and a
//! fast hash keeps authentication cheap on the request path.

use std::fmt;

use sha2::{Digest, Sha256};

/// Characters of a key id.
pub const ID_LEN: usize = 16;
/// Characters of a key secret (256 bits in base32).
pub const SECRET_LEN: usize = 52;
/// Every key starts with this.
pub const PREFIX: &str = "gh_";

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A full API key as handed to its owner once, at creation.
///
/// `Debug` and `Display` show only the id, so the secret cannot reach a log
/// line by accident; [`ApiKey::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The whole key, `gh_<id>_<secret>`, to return to the caller.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.0.get(PREFIX.len()..PREFIX.len() + ID_LEN).unwrap_or("");
        write!(f, "{PREFIX}{id}_<redacted>")
    }
}

/// A freshly generated key: the id, the key to show once, the hash to store.
pub(crate) struct Generated {
    pub(crate) id: String,
    pub(crate) key: ApiKey,
    pub(crate) hash: [u8; 32],
}

pub(crate) fn generate() -> Result<Generated, getrandom::Error> {
    let mut id = [0u8; 10];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let id = base32(&id);
    let secret = base32(&secret);
    let hash = hash_secret(&secret);
    Ok(Generated { key: ApiKey(format!("{PREFIX}{id}_{secret}")), id, hash })
}

/// Splits a presented key into id and secret, or `None` if it is not shaped
/// like one of ours. Nothing is looked up yet.
pub(crate) fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (is_id(id) && secret.len() == SECRET_LEN && secret.bytes().all(is_base32)).then_some((id, secret))
}

pub(crate) fn is_id(value: &str) -> bool {
    value.len() == ID_LEN && value.bytes().all(is_base32)
}

pub(crate) fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A random event id in the UUID v4 layout, for correlating an audit row
/// with its log line.
pub(crate) fn event_id() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
}

fn is_base32(b: u8) -> bool {
    b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)
}

/// RFC 4648 base32 in lower case, without padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32(b"f"), "my");
    }

    #[test]
    fn generated_keys_parse_back() -> Result<(), getrandom::Error> {
        let g = generate()?;
        assert_eq!(g.key.expose().len(), PREFIX.len() + ID_LEN + 1 + SECRET_LEN);
        let (id, secret) = parse(g.key.expose()).ok_or(getrandom::Error::UNSUPPORTED)?;
        assert_eq!(id, g.id);
        assert_eq!(hash_secret(secret), g.hash);
        assert!(!format!("{:?}", g.key).contains(secret));
        Ok(())
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let secret = "a".repeat(SECRET_LEN);
        assert!(parse(&format!("gh_{}_{secret}", "b".repeat(ID_LEN))).is_some());
        assert!(parse(&format!("gx_{}_{secret}", "b".repeat(ID_LEN))).is_none());
        assert!(parse(&format!("gh_{}_{secret}", "b".repeat(ID_LEN - 1))).is_none());
        assert!(parse(&format!("gh_{}_{secret}x", "b".repeat(ID_LEN))).is_none());
        assert!(parse(&format!("gh_{}_{}", "B".repeat(ID_LEN), secret)).is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn event_ids_look_like_uuids() -> Result<(), getrandom::Error> {
        let id = event_id()?;
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        Ok(())
    }
}
