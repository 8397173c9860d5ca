//! `gatehouse serve`: builds the runtime, binds both listeners, serves until
//! SIGTERM or SIGINT, then drains:
//!
//! 1. readiness turns 503 and gRPC health NOT_SERVING at once, so Kubernetes
//!    takes the pod out of its endpoints;
//! 2. traffic is still served for `drain_delay`, while that news spreads;
//! 3. the listener closes, HTTP/2 connections get GOAWAY and HTTP/1 ones
//!    `Connection: close`, and in-flight requests get `shutdown_timeout` to
//!    finish; whatever is left is cut;
//! 4. the process exits 0. A second signal at any point exits at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gatehouse_health::{ConfigHash, Health, Info};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use crate::access_log::AccessLogLayer;
use crate::admin_api::{ADMIN_TOKEN_ENV, AdminApi};
use crate::auth::Auth;
use crate::config::Config;
use crate::hygiene::HeadLimits;
use crate::router::Router;
use crate::stack::{self, Gateway};
use crate::telemetry;
use crate::upstream::ClusterSet;
use crate::{accept, admin};
use gatehouse_store::{NewAuditEvent, Outcome};
use gatehouse_telemetry::logging::LineSink;
use gatehouse_telemetry::state::{ConfigReload, GatewayState};
use gatehouse_telemetry::{BuildInfo, GrpcMetricsLayer};

/// Exit code when a second signal cuts the drain short.
const EXIT_INTERRUPTED: u8 = 130;

/// Runs the gateway; returns the process exit code. `path` is read again on
/// SIGHUP.
pub fn run(config: Config, path: PathBuf) -> ExitCode {
    let (_flush_on_exit, line_sink) = gatehouse_telemetry::logging::init(
        &config.logging.level,
        config.logging.format == crate::config::LogFormat::Json,
    );
    let mut rt = runtime_builder(&config.runtime);
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    // On a thread of its own rather than the main thread, whose allocator
    // heap was set up before `main` could configure it (see
    // `gatehouse_alloc::keep_full_pages`).
    let serving = std::thread::Builder::new().name("gatehouse-serve".into()).spawn(move || {
        let code = rt.block_on(serve(config, path, line_sink));
        // Cut connections that outlived the shutdown timeout now, so their
        // access lines are written before the process exits.
        rt.shutdown_timeout(Duration::from_millis(500));
        code
    });
    match serving.map(std::thread::JoinHandle::join) {
        Ok(Ok(code)) => code,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the serving thread");
            ExitCode::FAILURE
        }
    }
}

/// The runtime the config asks for. With one core (a CPU limit of 1 in
/// Kubernetes, or `worker_threads: 1`) a single-threaded runtime avoids
/// cross-thread wake-ups: the same work in markedly less CPU per request.
fn runtime_builder(cfg: &crate::config::Runtime) -> tokio::runtime::Builder {
    use crate::config::RuntimeFlavor;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = cfg.worker_threads.unwrap_or(cores);
    let single = match cfg.flavor {
        RuntimeFlavor::CurrentThread => true,
        RuntimeFlavor::MultiThread => false,
        RuntimeFlavor::Auto => threads == 1,
    };
    let mut rt = if single {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    rt.enable_all();
    rt
}

/// Build facts baked in by `build.rs`.
pub fn build_info() -> (&'static str, &'static str, &'static str) {
    (env!("CARGO_PKG_VERSION"), env!("GATEHOUSE_COMMIT"), env!("GATEHOUSE_BUILD_TIME"))
}

async fn serve(config: Config, path: PathBuf, line_sink: Option<LineSink>) -> ExitCode {
    let signals = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()));
    let (mut term, mut int, mut hup) = match signals {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    // Metric handles bind to the recorder current when they are built, so
    // the exporter is installed before anything creates one.
    let (version, commit, build_time) = build_info();
    let metrics = match gatehouse_telemetry::install(
        &telemetry::metrics_config(&config),
        &BuildInfo { version: version.to_owned(), commit: commit.to_owned() },
    ) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the metrics exporter");
            return ExitCode::FAILURE;
        }
    };
    let seed = telemetry::seed_spec(&config);
    gatehouse_telemetry::seed::seed(&seed);
    let gateway_state = GatewayState::new();
    gateway_state.seed();
    let grpc_metrics = GrpcMetricsLayer::new(seed.grpc_catalogue());
    let health = Health::new();
    let db = match crate::store::open(&config.database, &health).await {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the database");
            return ExitCode::FAILURE;
        }
    };
    let mut cluster_set = ClusterSet::default();
    let clusters = cluster_set.apply(&config.upstreams, &health);
    let router = Router::new(&config.routes, &clusters);
    let limits = HeadLimits {
        max_headers: config.limits.max_headers,
        max_header_bytes: config.limits.max_header_bytes.0 as usize,
    };
    let gateway = Arc::new(Gateway::new(router, limits, Auth::new(db.keys.clone())));
    let admin_api = AdminApi::new(db.store.clone(), db.keys.clone(), std::env::var(ADMIN_TOKEN_ENV).ok());

    let (public, admin_listener) =
        match tokio::try_join!(TcpListener::bind(&config.listeners.public), TcpListener::bind(&config.listeners.admin))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot bind the listeners");
                return ExitCode::FAILURE;
            }
        };
    let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let (public_addr, admin_addr) = (addr(&public), addr(&admin_listener));
    let config_hash = ConfigHash::new(config.source_hash.clone());
    let info = Info {
        version: version.to_owned(),
        commit: commit.to_owned(),
        build_time: build_time.to_owned(),
        config_hash: config_hash.clone(),
        started_at: SystemTime::now(),
        listeners: BTreeMap::from([
            ("admin".to_owned(), admin_addr.clone()),
            ("public".to_owned(), public_addr.clone()),
        ]),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let reload = Reload {
        path,
        health: health.clone(),
        gateway: Arc::clone(&gateway),
        config_hash,
        grpc_metrics: grpc_metrics.clone(),
        state: gateway_state,
        store: db.store.clone(),
    };
    if let Some(addr) = metrics.dedicated_listener() {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(metrics = %addr, "serving /metrics on its own listener");
                tokio::spawn(admin::serve(l, admin::metrics_router(Arc::clone(&metrics)), stop_rx.clone()));
            }
            Err(e) => {
                tracing::error!(error = %e, address = %addr, "cannot bind the metrics listener");
                return ExitCode::FAILURE;
            }
        }
    }
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        admin::router(health.clone(), info, admin_api, Arc::clone(&metrics)),
        stop_rx.clone(),
    ));
    let public_task = tokio::spawn({
        let limits = config.limits.clone();
        let access_log = AccessLogLayer::new(config.logging.access_log, line_sink);
        let stop_rx = stop_rx.clone();
        async move {
            accept::serve(public, stack::public_service(gateway, access_log, grpc_metrics), &limits, stop_rx).await
        }
    });
    health.set_config_loaded(true);
    tracing::info!(
        public = %public_addr,
        admin = %admin_addr,
        routes = config.routes.len(),
        upstreams = clusters.len(),
        "listening"
    );

    let mut config = config;
    loop {
        tokio::select! {
            _ = hup.recv() => reload.run(&mut config, &mut cluster_set).await,
            _ = next_signal(&mut term, &mut int) => break,
        }
    }
    health.start_draining();
    let shutdown = &config.shutdown;
    tracing::info!(
        drain_delay_ms = shutdown.drain_delay.0.as_millis() as u64,
        shutdown_timeout_ms = shutdown.shutdown_timeout.0.as_millis() as u64,
        "shutdown signal received; readiness is now 503"
    );
    tokio::select! {
        _ = tokio::time::sleep(shutdown.drain_delay.0) => {}
        _ = next_signal(&mut term, &mut int) => return interrupted(),
    }
    tracing::info!("drain delay over; closing the listener and finishing in-flight requests");
    let _ = stop_tx.send(true);
    tokio::select! {
        done = tokio::time::timeout(shutdown.shutdown_timeout.0, public_task) => {
            if done.is_err() {
                tracing::warn!("in-flight requests outlasted the shutdown timeout; cutting them");
            }
        }
        _ = next_signal(&mut term, &mut int) => return interrupted(),
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
    cluster_set.stop();
    for t in db.tasks {
        t.abort();
    }
    if let Err(e) = metrics.flush().await {
        tracing::warn!(error = %e, "last metrics push failed");
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

fn interrupted() -> ExitCode {
    tracing::warn!("second signal: exiting at once");
    ExitCode::from(EXIT_INTERRUPTED)
}

async fn next_signal(term: &mut Signal, int: &mut Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// What a SIGHUP reload needs.
struct Reload {
    path: PathBuf,
    health: Health,
    gateway: Arc<Gateway>,
    config_hash: ConfigHash,
    grpc_metrics: GrpcMetricsLayer,
    state: GatewayState,
    store: gatehouse_store::Store,
}

impl Reload {
    /// A reload is a privileged decision: it is audited. The config is in
    /// force (or refused) either way; a failed audit write is logged loudly.
    async fn audit(&self, outcome: Outcome, reason: &str) {
        let target = self.path.display().to_string();
        let max = gatehouse_store::limits::MAX_REASON_LEN;
        let cut = (0..=max.min(reason.len())).rev().find(|i| reason.is_char_boundary(*i)).unwrap_or(0);
        let reason = reason[..cut].to_owned();
        let event = NewAuditEvent::new("signal:SIGHUP", "config.reload", &target, outcome, reason);
        match self.store.record_audit(event).await {
            Ok(e) => crate::admin_api::log_audit(&e),
            Err(e) => tracing::error!(error = %e, "could not record the config reload in the audit trail"),
        }
    }

    /// Reads the config file again. A bad file changes nothing but
    /// readiness, which turns 503 until a good file is loaded: the process
    /// keeps serving the old config, but a rollout should not proceed.
    async fn run(&self, config: &mut Config, clusters: &mut ClusterSet) {
        let new = match Config::load(&self.path) {
            Ok(new) => new,
            Err(errors) => {
                for e in &errors.0 {
                    tracing::error!(error = %e, "config reload rejected");
                }
                let first = errors.0.first().map(ToString::to_string).unwrap_or_default();
                let reason = format!("{} error(s); first: {first}", errors.0.len());
                self.audit(Outcome::Failure, &reason).await;
                self.health.set_config_loaded(false);
                self.state.config_reloaded(ConfigReload::Failure);
                return;
            }
        };
        let fixed = [
            ("listeners", new.listeners != config.listeners),
            ("runtime", new.runtime != config.runtime),
            ("limits", new.limits != config.limits),
            ("logging", new.logging != config.logging),
            ("metrics", new.metrics != config.metrics),
        ];
        for (section, _) in fixed.iter().filter(|(_, changed)| *changed) {
            tracing::warn!(section, "this section changed but takes effect only after a restart");
        }
        let live = clusters.apply(&new.upstreams, &self.health);
        let seed = telemetry::seed_spec(&new);
        gatehouse_telemetry::seed::seed(&seed);
        self.grpc_metrics.update(seed.grpc_catalogue());
        self.gateway.replace_router(Router::new(&new.routes, &live));
        self.state.config_reloaded(ConfigReload::Success);
        self.config_hash.set(new.source_hash.clone());
        self.health.set_config_loaded(true);
        tracing::info!(routes = new.routes.len(), upstreams = live.len(), config_hash = %new.source_hash, "config reloaded");
        self.audit(Outcome::Success, &new.source_hash).await;
        // Shutdown timing and database settings apply from the new file.
        *config = new;
    }
}
