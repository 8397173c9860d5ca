//! The `gatehouse` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Gatehouse: an observable HTTP/1.1, HTTP/2 and gRPC gateway.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve traffic with the given config.
    Serve {
        /// The YAML config file.
        #[arg(long, short, default_value = "gatehouse.yaml")]
        config: PathBuf,
    },
    /// Check a config file: print every error with its field path.
    CheckConfig {
        /// The YAML config file.
        config: PathBuf,
    },
}

/// Exit code for a bad config (sysexits' EX_CONFIG would be 78; 2 is the
/// usual "invalid input" for command-line tools).
const EXIT_BAD_CONFIG: u8 = 2;

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!("{}: OK ({} upstreams, {} routes)", config.display(), c.upstreams.len(), c.routes.len());
                ExitCode::SUCCESS
            }
            Err(errors) => report(&config, &errors),
        },
        Command::Serve { config: path } => match Config::load(&path) {
            // A bad config never binds a port.
            Err(errors) => report(&path, &errors),
            Ok(config) => crate::serve::run(config, path),
        },
    }
}

fn report(path: &std::path::Path, errors: &crate::config::ConfigErrors) -> ExitCode {
    eprintln!("{}: {} error(s)", path.display(), errors.0.len());
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    ExitCode::from(EXIT_BAD_CONFIG)
}
