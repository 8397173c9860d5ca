//! The `gatehouse` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::admin_client::{self, ADMIN_URL_ENV, Call, DEFAULT_ADMIN_URL};
use crate::config::Config;
use http::Method;

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
    /// Apply pending database migrations and exit.
    Migrate {
        /// The YAML config file (for `database.url`; `GATEHOUSE_DATABASE_URL` overrides).
        #[arg(long, short, default_value = "gatehouse.yaml")]
        config: PathBuf,
    },
    /// Manage API keys through a running gateway's admin API.
    Keys {
        /// The admin API's base URL.
        #[arg(long, env = ADMIN_URL_ENV, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Read and verify the audit trail through the admin API.
    Audit {
        /// The admin API's base URL.
        #[arg(long, env = ADMIN_URL_ENV, default_value = DEFAULT_ADMIN_URL)]
        admin_url: String,
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; the key is printed once.
    Create {
        /// The identity the key authenticates as.
        #[arg(long)]
        principal: String,
        /// A scope to grant (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Expiry as an RFC 3339 time, e.g. 2030-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List audit events after a sequence number.
    List {
        /// Show events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Verify the hash chain; exits 1 and names the first broken link.
    Verify,
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
        Command::Migrate { config: path } => match Config::load(&path) {
            Err(errors) => report(&path, &errors),
            Ok(config) => migrate(&config),
        },
        Command::Keys { admin_url, command } => keys(&admin_url, command),
        Command::Audit { admin_url, command } => audit(&admin_url, command),
    }
}

fn migrate(config: &Config) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let store = gatehouse_store::Store::connect(&config.database.url, Default::default()).await?;
        store.migrate().await
    });
    match result {
        Ok(()) => {
            println!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keys(base: &str, command: KeysCommand) -> ExitCode {
    let call = match command {
        KeysCommand::Create { principal, scopes, expires_at } => Call {
            method: Method::POST,
            path: "/v1/keys".into(),
            body: Some(serde_json::json!({ "principal": principal, "scopes": scopes, "expires_at": expires_at })),
        },
        KeysCommand::List => Call { method: Method::GET, path: "/v1/keys".into(), body: None },
        KeysCommand::Revoke { id } => {
            // The id goes into a path; anything but the key id alphabet is refused here.
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                eprintln!("error: a key id is letters and digits, got {id:?}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            Call { method: Method::DELETE, path: format!("/v1/keys/{id}"), body: None }
        }
    };
    admin_client::run(base, call, |_| Ok(()))
}

fn audit(base: &str, command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::List { after, limit } => admin_client::run(
            base,
            Call { method: Method::GET, path: format!("/v1/audit?after={after}&limit={limit}"), body: None },
            |_| Ok(()),
        ),
        AuditCommand::Verify => {
            admin_client::run(base, Call { method: Method::GET, path: "/v1/audit/verify".into(), body: None }, |v| {
                match v.get("ok").and_then(serde_json::Value::as_bool) {
                    Some(true) => Ok(()),
                    _ => Err(format!(
                        "audit chain broken at seq {}: {}",
                        v["first_broken"]["seq"],
                        v["first_broken"]["reason"].as_str().unwrap_or("unknown")
                    )),
                }
            })
        }
    }
}

fn report(path: &std::path::Path, errors: &crate::config::ConfigErrors) -> ExitCode {
    eprintln!("{}: {} error(s)", path.display(), errors.0.len());
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    ExitCode::from(EXIT_BAD_CONFIG)
}
