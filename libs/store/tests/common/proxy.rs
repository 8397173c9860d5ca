//! A TCP forwarder on a loopback port that a test can cut and restore, to
//! take a database "down" for one store while it keeps running for others.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Forwards `127.0.0.1:<port>` to a target address while up.
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    // The accept loop and every forwarded connection; dropping them closes
    // the sockets, which is what clients see when a database goes away.
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    /// Starts forwarding on a fresh port.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let proxy = Self { addr, target, tasks: Arc::new(Mutex::new(JoinSet::new())) };
        proxy.serve(listener);
        proxy
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the port and every forwarded connection.
    pub fn down(&self) {
        self.tasks.lock().expect("proxy tasks").abort_all();
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind proxy port");
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = Arc::clone(&self.tasks);
        let target = self.target;
        self.tasks.lock().expect("proxy tasks").spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tasks.lock().expect("proxy tasks").spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.abort_all();
        }
    }
}
