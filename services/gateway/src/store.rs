//! Start-up of the database side: connect, migrate, load the key cache, and
//! keep the readiness check and pool gauges fed.

use std::time::Duration;

use gatehouse_health::Health;
use gatehouse_store::{CacheSync, KeyCache, Store, StoreError, StoreOptions};
use tokio::task::JoinHandle;

use crate::config::Database;

/// How often the database readiness check pings.
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// How often the pool gauges are sampled.
const POOL_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// The database handles the gateway runs with.
pub struct Db {
    /// The store, for the admin API.
    pub store: Store,
    /// The in-memory key cache, for the request path.
    pub keys: KeyCache,
    /// Background tasks: readiness pings and pool sampling.
    pub tasks: Vec<JoinHandle<()>>,
}

/// Connects to the configured database. The gateway needs it once at
/// start-up to load the keys; afterwards it rides out outages on the cache.
pub async fn open(cfg: &Database, health: &Health) -> Result<Db, StoreError> {
    let opts = StoreOptions { max_connections: cfg.max_connections, ..StoreOptions::default() };
    let store = Store::connect(&cfg.url, opts).await?;
    if cfg.migrate {
        store.migrate().await?;
    }
    store.seed_metrics();
    let sync = CacheSync { poll_interval: cfg.poll_interval.0, ..CacheSync::default() };
    let keys = store.key_cache(sync).await?;

    let check = health.register("database", cfg.required);
    let pinger = store.clone();
    let ping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PING_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = std::time::Instant::now();
            match pinger.ping().await {
                Ok(latency) => check.report(Ok(()), latency),
                Err(e) => check.report(Err(e.to_string()), started.elapsed()),
            }
        }
    });
    let sampler = store.spawn_pool_sampler(POOL_SAMPLE_INTERVAL);
    Ok(Db { store, keys, tasks: vec![ping, sampler] })
}
