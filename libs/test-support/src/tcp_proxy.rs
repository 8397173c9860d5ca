//! A TCP forwarder a test can cut and restore, to take a server (a
//! database, say) away from one client while others keep reaching it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Forwards connections on `127.0.0.1:<port>` to a target while up.
///
/// [`TcpProxy::cut`] closes the port and every forwarded connection, as a
/// server that went away looks to its clients (connections reset, new ones
/// refused); [`TcpProxy::restore`] listens on the same port again.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    // The accept loop and every forwarded connection; aborting them closes
    // their sockets.
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl TcpProxy {
    /// Starts forwarding to `target` on a fresh loopback port.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let proxy = Self { addr, target, tasks: Arc::new(Mutex::new(JoinSet::new())) };
        proxy.serve(listener);
        proxy
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the port and every forwarded connection.
    pub fn cut(&self) {
        lock(&self.tasks).abort_all();
    }

    /// Listens on the same port again. Panics if the port cannot be bound.
    pub async fn restore(&self) {
        // The aborted accept loop drops its listener on its next poll; retry
        // briefly until the port is free.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebinding the proxy port {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = Arc::clone(&self.tasks);
        let target = self.target;
        lock(&self.tasks).spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let _ = inbound.set_nodelay(true);
                lock(&tasks).spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = outbound.set_nodelay(true);
                        let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        lock(&self.tasks).abort_all();
    }
}

fn lock(tasks: &Mutex<JoinSet<()>>) -> MutexGuard<'_, JoinSet<()>> {
    tasks.lock().unwrap_or_else(PoisonError::into_inner)
}
