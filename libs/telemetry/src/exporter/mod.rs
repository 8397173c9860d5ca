//! Exporter selection by `OTEL_METRICS_EXPORTER` and the background work
//! each exporter needs.
//!
//! - `prometheus` (default): the gateway serves [`Telemetry::render`] as
//!   `/metrics` on the admin port, or on [`Telemetry::dedicated_listener`]
//!   when `OTEL_EXPORTER_PROMETHEUS_HOST` or `_PORT` is set.
//! - `otlp`: periodic OTLP/HTTP protobuf push (see `otlp`).
//! - `console`: the Prometheus text on stderr at each export interval.
//! - `none`: no recorder; every handle is a no-op and nothing is served.
//!
//! Every exporter but `none` records into one [`MetricsRecorder`], whose
//! memory is bounded by the number of series (see `store`), and also
//! records `gateway_build_info`,
//! `gateway_start_time_seconds` and the `process_*` metrics, which are
//! collected right before each render or push.

mod console;
pub mod env;
mod otlp;
mod store;
mod text;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_process::Collector;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

pub use env::{Lookup, OtlpSettings, Settings};
pub use otlp::PushError;
pub use store::{MetricsHandle, MetricsRecorder};

use crate::{Buckets, Error, catalogue, state};
use otlp::Pusher;
use store::Store;

/// Which exporter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterKind {
    /// Prometheus text, scraped.
    Prometheus,
    /// OTLP/HTTP protobuf, pushed.
    Otlp,
    /// Prometheus text on stderr.
    Console,
    /// Nothing.
    None,
}

impl ExporterKind {
    /// The `OTEL_METRICS_EXPORTER` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prometheus => "prometheus",
            Self::Otlp => "otlp",
            Self::Console => "console",
            Self::None => "none",
        }
    }
}

/// Metrics settings from the config file (the environment picks the exporter).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsConfig {
    /// Histogram bucket layouts.
    pub buckets: Buckets,
}

/// The running build, for `gateway_build_info` and `service.version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The release version.
    pub version: String,
    /// The source commit.
    pub commit: String,
}

/// The installed exporter. Dropping it stops its background tasks.
#[derive(Debug)]
pub struct Telemetry {
    settings: Settings,
    /// What every exporter but `none` records into.
    store: Option<Arc<Store>>,
    pusher: Option<Arc<Pusher>>,
    process: Collector,
    tasks: Vec<JoinHandle<()>>,
}

/// Installs the exporter the process environment chooses as the global
/// recorder. Call it once, from within the Tokio runtime, before building
/// any layer or handle.
pub fn install(cfg: &MetricsConfig, build: &BuildInfo) -> Result<Telemetry, Error> {
    install_with_env(cfg, build, &|name| std::env::var(name).ok())
}

/// [`install`], reading variables through `env`.
pub fn install_with_env(cfg: &MetricsConfig, build: &BuildInfo, env: Lookup<'_>) -> Result<Telemetry, Error> {
    let settings = Settings::from_env(env, &build.version)?;
    let recorder = MetricsRecorder::new(&cfg.buckets)?;
    let kind = settings.kind();
    if kind != ExporterKind::None && tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::NoRuntime(kind.as_str()));
    }
    let mut telemetry = Telemetry { settings, store: None, pusher: None, process: Collector::default(), tasks: vec![] };
    if kind == ExporterKind::None {
        return Ok(telemetry);
    }
    let store = Arc::clone(&recorder.0);
    metrics::set_global_recorder(recorder).map_err(|_| Error::AlreadyInstalled)?;
    if let Settings::Otlp(otlp) = &telemetry.settings {
        telemetry.pusher = Some(Arc::new(Pusher::new(Arc::clone(&store), otlp.clone())));
    }
    telemetry.store = Some(store);
    catalogue::describe_all();
    telemetry.process.describe();
    telemetry.process.collect();
    state::record_build(&build.version, &build.commit);
    telemetry.spawn_tasks();
    Ok(telemetry)
}

impl Telemetry {
    /// The exporter that runs.
    pub fn kind(&self) -> ExporterKind {
        self.settings.kind()
    }

    /// The `/metrics` body, with fresh `process_*` values. `None` unless
    /// the exporter is `prometheus`: the other exporters serve nothing.
    pub fn render(&self) -> Option<String> {
        let store = self.store.as_ref().filter(|_| self.kind() == ExporterKind::Prometheus)?;
        self.process.collect();
        Some(store.render())
    }

    /// Where to serve `/metrics` instead of the admin port, when
    /// `OTEL_EXPORTER_PROMETHEUS_HOST`/`_PORT` ask for a listener of its own.
    pub fn dedicated_listener(&self) -> Option<SocketAddr> {
        match self.settings {
            Settings::Prometheus { listener } => listener,
            _ => None,
        }
    }

    /// Exports once now: an OTLP push or a console snapshot. Call it at
    /// shutdown so the last interval is not lost.
    pub async fn flush(&self) -> Result<(), PushError> {
        self.process.collect();
        if let Some(pusher) = &self.pusher {
            return pusher.push().await;
        }
        if let (Settings::Console { .. }, Some(store)) = (&self.settings, &self.store) {
            let _ = console::write_snapshot(store, &mut std::io::stderr().lock());
        }
        Ok(())
    }

    fn spawn_tasks(&mut self) {
        if let (Settings::Console { interval }, Some(store)) = (&self.settings, self.store.clone()) {
            let process = self.process.clone();
            self.tasks.push(every(*interval, move || {
                process.collect();
                let _ = console::write_snapshot(&store, &mut std::io::stderr().lock());
            }));
        }
        if let Some(pusher) = self.pusher.clone() {
            let process = self.process.clone();
            self.tasks.push(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(pusher.interval());
                ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    process.collect();
                    if let Err(e) = pusher.push().await {
                        tracing::warn!(error = %e, "metrics push failed; the next push carries the same totals");
                    }
                }
            }));
        }
    }
}

/// Runs `work` every `period`, starting one period from now.
fn every(period: Duration, mut work: impl FnMut() + Send + 'static) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            work();
        }
    })
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

#[cfg(test)]
mod tests;
