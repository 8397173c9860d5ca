//! Pool gauges: `gateway_db_pool_connections{state}` and
//! `gateway_db_pool_max_connections` are set from the pool's own counts on a
//! timer, so a scrape shows the pool as it is, not as it was at the last query.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::store::Store;

impl Store {
    /// Sets the pool gauges now.
    pub fn sample_pool(&self) {
        let pool = self.pool();
        self.metrics().set_pool(pool.size(), pool.num_idle(), pool.options().get_max_connections());
    }

    /// Samples the pool every `interval` (1 s suits a 15 s scrape) until the
    /// pool is closed, then reports it empty once more and stops.
    pub fn spawn_pool_sampler(&self, interval: Duration) -> JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                store.sample_pool();
                if store.pool().is_closed() {
                    return;
                }
            }
        })
    }

    /// Makes every `gateway_db_*` gauge and counter exist: gauges at the
    /// pool's current state, error counters at zero for each operation in
    /// [`Operation::ALL`](crate::Operation::ALL). Histograms appear with their first sample.
    pub fn seed_metrics(&self) {
        self.metrics().seed_counters();
        self.sample_pool();
    }
}
