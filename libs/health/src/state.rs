//! The process's health: the two built-in conditions (config loaded, not
//! draining), the checks other parts register, and the signals that follow
//! every change (a readiness watch channel and the gauges).
//!
//! Every change goes through [`Health::update`], which recomputes readiness
//! and publishes it while still holding the lock: two reports racing on
//! different threads can then never publish their results out of order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::check::{Check, CheckHandle};
use crate::gauges::Gauges;

/// The name of the built-in condition that config has been loaded.
pub const CONFIG_LOADED: &str = "config_loaded";

/// The name of the built-in condition that the process is not draining.
pub const DRAINING: &str = "draining";

/// The process's health state; cheap to clone, every clone sees the same
/// state.
///
/// Readiness holds when config is loaded, the process is not draining, and
/// every required check's last report was a success. Answering a probe
/// never does I/O: owners push results through their [`CheckHandle`].
#[derive(Clone)]
pub struct Health {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    ready: watch::Sender<bool>,
    draining: watch::Sender<bool>,
    gauges: Gauges,
}

#[derive(Default)]
pub(crate) struct State {
    config_loaded: bool,
    draining: bool,
    next_id: u64,
    /// Keyed by registration order, which is also the listing order.
    pub(crate) checks: BTreeMap<u64, Check>,
}

/// One point-in-time view of every condition and check, as `/readyz?verbose`
/// lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Whether the process is ready, computed from `checks` under one lock.
    pub ready: bool,
    /// The built-in conditions first, then checks in registration order.
    pub checks: Vec<CheckStatus>,
}

/// One condition or check in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckStatus {
    /// The name it was registered under.
    pub name: Cow<'static, str>,
    /// Whether its last result was a success.
    pub ok: bool,
    /// Whether a failure makes the process unready.
    pub required: bool,
    /// Why it failed; `None` when it passed.
    pub message: Option<String>,
    /// How long its last probe took; `None` for built-in conditions and
    /// checks that have not reported yet.
    pub latency: Option<Duration>,
}

impl Health {
    /// A process that has not loaded its config yet: not ready, not
    /// draining, no checks.
    ///
    /// The gauges bind to the `metrics` recorder current at this call, so
    /// build the `Health` after installing the recorder (or inside
    /// `metrics::with_local_recorder` in tests).
    pub fn new() -> Self {
        let shared = Shared {
            state: Mutex::new(State::default()),
            ready: watch::Sender::new(false),
            draining: watch::Sender::new(false),
            gauges: Gauges::new(),
        };
        Self { shared: Arc::new(shared) }
    }

    /// Registers a check owned by the caller, which reports through the
    /// returned handle. It fails until its first report.
    ///
    /// Names are listed as given (`upstream:echo`, `database`); they take a
    /// `String` too, since upstream names come from config. A failing
    /// optional (`required == false`) check is listed by `/readyz?verbose`
    /// but never makes the process unready.
    pub fn register(&self, name: impl Into<Cow<'static, str>>, required: bool) -> CheckHandle {
        let name = name.into();
        let id = self.update(|state| {
            let id = state.next_id;
            state.next_id += 1;
            state.checks.insert(id, Check::new(name.clone(), required));
            id
        });
        CheckHandle::new(self.clone(), id, name)
    }

    /// Records whether the current config is loaded: `true` once the first
    /// config is in force, `false` after a reload that failed.
    pub fn set_config_loaded(&self, loaded: bool) {
        self.update(|state| state.config_loaded = loaded);
    }

    /// Starts draining: readiness turns false at once and never returns.
    pub fn start_draining(&self) {
        self.update(|state| state.draining = true);
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        *self.shared.draining.borrow()
    }

    /// Whether the process is ready to take traffic.
    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Follows readiness: the receiver sees the current value and then each
    /// change (never the same value twice in a row).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.shared.ready.subscribe()
    }

    /// Resolves once draining has started (at once if it already has).
    pub fn draining(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut draining = self.shared.draining.subscribe();
        // Holding the state keeps the sender alive, so `wait_for` cannot
        // fail with a closed channel and resolve without draining.
        let keep_alive = self.clone();
        async move {
            let _ = draining.wait_for(|d| *d).await.map(|_| ());
            drop(keep_alive);
        }
    }

    /// Every condition and check with its current result.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let checks = state.statuses();
        Snapshot { ready: ready(&checks), checks }
    }

    /// Applies one change, then recomputes and publishes readiness.
    pub(crate) fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        // Each change is a few plain assignments, so a panic elsewhere
        // cannot leave the state half-written; poisoning carries no news.
        let mut state = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        let out = change(&mut state);
        let is_ready = ready(&state.statuses());
        let draining = state.draining;
        self.shared.ready.send_if_modified(|r| std::mem::replace(r, is_ready) != is_ready);
        self.shared.draining.send_if_modified(|d| std::mem::replace(d, draining) != draining);
        self.shared.gauges.set(is_ready, draining);
        out
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health").field("ready", &self.is_ready()).field("draining", &self.is_draining()).finish()
    }
}

impl State {
    fn statuses(&self) -> Vec<CheckStatus> {
        let config = CheckStatus {
            name: Cow::Borrowed(CONFIG_LOADED),
            ok: self.config_loaded,
            required: true,
            message: (!self.config_loaded).then(|| "config not loaded".to_owned()),
            latency: None,
        };
        let draining = CheckStatus {
            name: Cow::Borrowed(DRAINING),
            ok: !self.draining,
            required: true,
            message: self.draining.then(|| "shutting down".to_owned()),
            latency: None,
        };
        [config, draining].into_iter().chain(self.checks.values().map(Check::status)).collect()
    }
}

fn ready(checks: &[CheckStatus]) -> bool {
    checks.iter().all(|c| c.ok || !c.required)
}
