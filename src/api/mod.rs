//! The HTTP API of SPEC section 3: routing (`router`), the store handlers
//! (`handlers`) and the operational endpoints (`ops`).

pub mod handlers;
pub mod ops;
pub mod router;

use crate::config::{Config, Limits, StoreConfig};
use crate::readiness::Readiness;
use crate::runtime::mesh::Mesh;
use crate::runtime::shard::Shard;
use crate::store::redis::RedisStores;
use router::Router;
use std::rc::Rc;
use std::sync::Arc;

/// A subsystem that adds its own series to `/metrics` (the Kafka consumer,
/// the Redis stores).
pub trait MetricsSource: Send + Sync {
    fn render(&self, out: &mut String);
}

/// What every shard shares, read-only, built once at start-up.
pub struct Shared {
    pub router: Router,
    pub admin_token: Option<String>,
    pub limits: Limits,
    pub readiness: Arc<Readiness>,
    /// Route labels for metrics: each route's path, then `ops`, then `unmatched`.
    pub route_labels: Vec<String>,
    pub store_names: Vec<String>,
    pub metrics_sources: Vec<Arc<dyn MetricsSource>>,
    /// The Redis stores, when any is configured.
    pub redis: Option<RedisStores>,
}

impl Shared {
    pub fn new(config: &Config, readiness: Arc<Readiness>, metrics_sources: Vec<Arc<dyn MetricsSource>>, redis: Option<RedisStores>) -> Shared {
        let mut route_labels: Vec<String> = config.cache.routes.iter().map(|r| r.path.clone()).collect();
        route_labels.push("ops".into());
        route_labels.push("unmatched".into());
        Shared {
            router: Router::new(config),
            admin_token: config.webservice.admin_token.clone().filter(|t| !t.is_empty()),
            limits: config.webservice.limits.clone(),
            readiness,
            route_labels,
            store_names: config.cache.stores.iter().map(|s| s.name().to_string()).collect(),
            metrics_sources,
            redis,
        }
    }

    /// The Redis stores' handle when `store` is one of them.
    pub fn redis_for(&self, store: usize) -> Option<&RedisStores> {
        self.redis.as_ref().filter(|r| r.writers.get(store).is_some_and(Option::is_some))
    }

    pub fn ops_label(&self) -> u16 {
        (self.route_labels.len() - 2) as u16
    }

    pub fn unmatched_label(&self) -> u16 {
        (self.route_labels.len() - 1) as u16
    }
}

/// Which stores are kept in the shards' memory (the others live elsewhere).
pub fn memory_stores(config: &Config) -> Vec<bool> {
    config.cache.stores.iter().map(|s| matches!(s, StoreConfig::InMemory { .. })).collect()
}

/// One shard's view of the API: its own data, its mesh handle, the shared
/// read-only parts, and the shutdown state of its connections.
pub struct Api {
    pub shard: Rc<Shard>,
    pub mesh: Mesh,
    pub shared: Arc<Shared>,
    /// Set when the server stops: connections close after their current request.
    pub draining: std::cell::Cell<bool>,
    /// Requests parsed but not yet answered, awaited on shutdown.
    pub in_flight: std::cell::Cell<usize>,
}
