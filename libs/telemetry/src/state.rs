//! The gateway's own state: `gateway_build_info`,
//! `gateway_start_time_seconds`, `gateway_ready`, `gateway_draining`,
//! `gateway_config_reloads_total{result}` and
//! `gateway_config_last_reload_success_timestamp_seconds`. (The
//! `gateway_db_*` series belong to gatehouse-store, which records them.)

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge};

use crate::catalogue::{BUILD_INFO, CONFIG_LAST_RELOAD_SUCCESS, CONFIG_RELOADS, DRAINING, READY, START_TIME};
use crate::series;

/// The outcome of a configuration load, the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigReload {
    /// The new configuration is in force.
    Success,
    /// It was refused; the old one stays.
    Failure,
}

/// Cached handles for config reloads, plus seeding of the readiness and draining gauges. Cloning
/// shares them.
#[derive(Clone, Debug)]
pub struct GatewayState(Arc<StateHandles>);

#[derive(Debug)]
struct StateHandles {
    ready: Gauge,
    draining: Gauge,
    reloads: [Counter; 2],
    last_success: Gauge,
}

impl GatewayState {
    /// Builds the handles.
    pub fn new() -> Self {
        Self(Arc::new(StateHandles {
            ready: series::gauge(&READY, []),
            draining: series::gauge(&DRAINING, []),
            reloads: ["success", "failure"].map(|r| series::counter(&CONFIG_RELOADS, [r])),
            last_success: series::gauge(&CONFIG_LAST_RELOAD_SUCCESS, []),
        }))
    }

    /// Counts a config load; a success also stamps the time.
    pub fn config_reloaded(&self, result: ConfigReload) {
        self.0.reloads[result as usize].increment(1);
        if result == ConfigReload::Success {
            self.0.last_success.set(unix_now());
        }
    }

    /// Makes every series exist, without changing values already set.
    /// `gateway_ready` and `gateway_draining` are only seeded here: the
    /// health state (libs/health) is their one writer.
    pub fn seed(&self) {
        let h = &self.0;
        [&h.ready, &h.draining, &h.last_success].into_iter().for_each(|g| g.increment(0.0));
        h.reloads.iter().for_each(|c| c.increment(0));
    }
}

impl Default for GatewayState {
    fn default() -> Self {
        Self::new()
    }
}

/// Records `gateway_build_info{version,commit} 1` and
/// `gateway_start_time_seconds`.
pub fn record_build(version: &str, commit: &str) {
    series::gauge(&BUILD_INFO, [version, commit]).set(1.0);
    series::gauge(&START_TIME, []).set(unix_now());
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
