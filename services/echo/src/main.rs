//! `gatehouse-echo`: the demo and test upstream. Binds, prints one JSON line
//! naming its address on stdout (so a test harness can use port 0), serves
//! until SIGTERM or SIGINT, then drains.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long in-flight requests may run after a shutdown signal; endless
/// streams would otherwise keep the process alive forever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/1.1, HTTP/2 and gRPC echo server with knobs for testing a gateway.
#[derive(Parser)]
#[command(name = "gatehouse-echo", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: SocketAddr,
    /// Name sent in every response's `x-echo-name` header.
    #[arg(long, default_value = "echo", value_parser = parse_name)]
    name: String,
}

fn parse_name(raw: &str) -> Result<String, String> {
    if !raw.is_empty() && raw.chars().all(|c| c.is_ascii_graphic()) {
        Ok(raw.to_owned())
    } else {
        Err("a name is one or more printable ASCII characters without spaces".to_owned())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gatehouse-echo: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let signal = shutdown_signal()?;
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let line = serde_json::json!({
        "msg": "listening",
        "addr": addr.to_string(),
        "name": args.name,
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    drop(stdout);

    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        // A dropped sender also means stop.
        let _ = stopped.await;
    };
    let mut server = tokio::spawn(gatehouse_echo::serve(listener, args.name, shutdown));
    tokio::select! {
        joined = &mut server => return joined.map_err(std::io::Error::other)?,
        () = signal => {}
    }
    tracing::info!("shutting down");
    let _ = stop.send(());
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(joined) => joined.map_err(std::io::Error::other)?,
        Err(_) => {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "requests still in flight; exiting anyway");
            Ok(())
        }
    }
}

/// Registers the handlers at once rather than on first poll, so a harness
/// that signals as soon as it reads the address line still gets a graceful
/// exit instead of the default action.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}
