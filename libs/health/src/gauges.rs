//! The health gauges, named once here with their help text so dashboards,
//! alerts and tests refer to the same strings.

use metrics::{Gauge, describe_gauge, gauge};

/// `gateway_ready`: 1 while `/readyz` answers 200, else 0.
pub const READY: &str = "gateway_ready";

/// `gateway_draining`: 1 once shutdown has begun, else 0.
pub const DRAINING: &str = "gateway_draining";

/// Handles bound once, when the [`crate::Health`] is built, to the recorder
/// current then; updates never look a name up again.
pub(crate) struct Gauges {
    ready: Gauge,
    draining: Gauge,
}

impl Gauges {
    /// Describes and registers both gauges, at 0 so the series exist before
    /// the first change (an alert on `gateway_ready == 0` must see them).
    pub(crate) fn new() -> Self {
        describe_gauge!(READY, "1 while the gateway is ready to take traffic (GET /readyz answers 200), else 0");
        describe_gauge!(DRAINING, "1 once the gateway has started draining for shutdown, else 0");
        let gauges = Self { ready: gauge!(READY), draining: gauge!(DRAINING) };
        gauges.set(false, false);
        gauges
    }

    pub(crate) fn set(&self, ready: bool, draining: bool) {
        self.ready.set(f64::from(u8::from(ready)));
        self.draining.set(f64::from(u8::from(draining)));
    }
}
