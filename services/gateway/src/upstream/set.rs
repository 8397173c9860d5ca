//! The running set of clusters and their background tasks (DNS resolver,
//! endpoint probe with its readiness check), updated in place on reload.
//!
//! A cluster whose config did not change survives a reload with its
//! connection pool and load counters; a changed one is replaced; a removed
//! one has its tasks stopped and its readiness check taken out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use gatehouse_health::{CheckHandle, Health};
use tokio::task::JoinHandle;

use super::{Cluster, probe};
use crate::config;

struct Running {
    cluster: Arc<Cluster>,
    config: config::Upstream,
    tasks: Vec<JoinHandle<()>>,
    /// Shared with the probe task; taken out on stop so the check can be
    /// removed whether or not the aborted task has unwound yet.
    check: Arc<Mutex<Option<CheckHandle>>>,
}

impl Running {
    fn start(name: &str, cfg: &config::Upstream, health: &Health) -> Self {
        let cluster = Cluster::new(name, cfg);
        let check = Arc::new(Mutex::new(Some(health.register(format!("upstream:{name}"), cfg.required))));
        let mut tasks: Vec<JoinHandle<()>> = cluster.spawn_resolver(cfg).into_iter().collect();
        let reporter = Arc::clone(&check);
        tasks.push(probe::spawn(Arc::clone(&cluster), cfg.probe_interval.0, cfg.connect_timeout.0, move |_, r| {
            let result = if r.healthy > 0 { Ok(()) } else { Err(format!("no endpoint answers (0 of {})", r.total)) };
            if let Some(check) = reporter.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                check.report(result, r.latency);
            }
        }));
        Self { cluster, config: cfg.clone(), tasks, check }
    }

    fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(check) = self.check.lock().unwrap_or_else(PoisonError::into_inner).take() {
            check.remove();
        }
    }
}

/// The clusters in force.
#[derive(Default)]
pub struct ClusterSet {
    running: BTreeMap<String, Running>,
}

impl std::fmt::Debug for ClusterSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.running.keys()).finish()
    }
}

impl ClusterSet {
    /// Brings the set in line with `upstreams` and returns the clusters.
    pub fn apply(&mut self, upstreams: &BTreeMap<String, config::Upstream>, health: &Health) -> Vec<Arc<Cluster>> {
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| upstreams.get(*name) != Some(&r.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = self.running.remove(&name) {
                r.stop();
            }
        }
        for (name, cfg) in upstreams {
            if !self.running.contains_key(name) {
                self.running.insert(name.clone(), Running::start(name, cfg, health));
            }
        }
        self.running.values().map(|r| Arc::clone(&r.cluster)).collect()
    }

    /// Stops every background task.
    pub fn stop(&mut self) {
        for (_, r) in std::mem::take(&mut self.running) {
            r.stop();
        }
    }
}
