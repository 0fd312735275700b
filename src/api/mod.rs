//! The HTTP API: routing (`router`), the store handlers (`handlers`), the
//! body of a write (`write_body`), key listings (`list`), position-bound
//! reads (`min_offset`), writes through Kafka (`write_through`), the
//! operational endpoints (`ops`) and the status page with its JSON twin
//! (`status`). [`Api::store`] is the one place that tells a Redis store
//! from an in-memory one.

pub mod handlers;
pub mod list;
pub mod min_offset;
pub mod ops;
pub mod redis_applied;
pub mod router;
pub mod status;
pub mod write_body;
pub mod write_through;

use crate::config::{Config, Limits, Writes};
use crate::http::response::{self, Framing};
use crate::http::{Handler, Request, ResponseWriter};
use crate::kafka::produce::KafkaWriter;
use crate::metrics::MetricsSource;
use crate::positions::FeedPositions;
use crate::readiness::Readiness;
use crate::runtime::mesh::{Mesh, ShardedStore};
use crate::runtime::shard::Shard;
use crate::runtime::{ServiceFactory, ShardService};
use crate::store::handle::RedisStore;
use crate::store::redis::RedisStores;
use crate::store::{StoreError, StoreHandle};
use router::Router;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

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
    /// Every feed's positions (`memory`, then one per Redis store), for `GET /offsets`.
    pub feeds: Vec<Arc<FeedPositions>>,
    /// Per route: the topic its writes go to (`writes: kafka`), else `None`.
    pub write_topics: Vec<Option<String>>,
    /// The Kafka producer, when a route writes through Kafka.
    pub writer: Option<KafkaWriter>,
}

impl Shared {
    pub fn new(
        config: &Config,
        readiness: Arc<Readiness>,
        metrics_sources: Vec<Arc<dyn MetricsSource>>,
        redis: Option<RedisStores>,
    ) -> Shared {
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
            feeds: Vec::new(),
            write_topics: write_topics(config),
            writer: None,
        }
    }

    /// The Redis stores' handle when `store` is one of them.
    pub fn redis_for(&self, store: usize) -> Option<&RedisStores> {
        self.redis.as_ref().filter(|r| r.serves(store))
    }

    pub fn ops_label(&self) -> u16 {
        (self.route_labels.len() - 2) as u16
    }

    pub fn unmatched_label(&self) -> u16 {
        (self.route_labels.len() - 1) as u16
    }
}

/// Per route, the topic a `writes: kafka` route produces to.
fn write_topics(config: &Config) -> Vec<Option<String>> {
    config.cache.routes.iter().map(|r| r.topic.clone().filter(|_| r.writes == Writes::Kafka)).collect()
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
    /// What each Redis store's feed has written, for position-bound requests.
    pub redis_applied: redis_applied::RedisApplied,
}

impl Api {
    /// What each shard serves: an `Api` over that shard's data and mesh,
    /// sharing `shared`.
    pub fn factory(shared: Arc<Shared>) -> ServiceFactory<Api> {
        Arc::new(move |shard, mesh| Api {
            shard,
            mesh,
            redis_applied: redis_applied::RedisApplied::start(&shared.store_names, &shared.feeds),
            shared: shared.clone(),
            draining: Default::default(),
            in_flight: Default::default(),
        })
    }

    /// The store behind `store` (an index in `cache.stores`), whatever its kind.
    pub fn store(&self, store: usize) -> StoreHandle<'_, ShardedStore<'_>> {
        match self.shared.redis_for(store) {
            Some(redis) => StoreHandle::Redis(RedisStore { redis, store }),
            None => StoreHandle::Memory(self.mesh.store(store)),
        }
    }
}

/// The store's problem, named: 502 for a value it holds that is not ours,
/// else 503 with `Retry-After` (the client may retry).
pub fn store_failed(out: &mut Vec<u8>, framing: Framing, error: &StoreError) -> u16 {
    match error.status() {
        503 => response::error_with(out, 503, &error.to_string(), &[("Retry-After", b"1")], framing),
        status => response::error(out, status, &error.to_string(), framing),
    }
    error.status()
}

impl ShardService for Api {
    fn start_draining(&self) {
        self.draining.set(true);
    }

    fn in_flight(&self) -> usize {
        self.in_flight.get()
    }
}

/// What HTTP framing calls: this shard's routes, stores and metrics.
impl Handler for Api {
    type Answer = handlers::Answer;

    fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    fn draining(&self) -> bool {
        self.draining.get()
    }

    fn request_started(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    fn request_ended(&self) {
        self.in_flight.set(self.in_flight.get() - 1);
    }

    fn precheck(&self, req: &Request<'_>, res: &mut ResponseWriter<'_>) -> Option<handlers::Answer> {
        let framing = res.framing();
        handlers::route(self, req, framing, res.buf()).err()
    }

    async fn handle(&self, req: &Request<'_>, res: &mut ResponseWriter<'_>) -> handlers::Answer {
        handlers::handle(self, req, res).await
    }

    fn record(&self, req: &Request<'_>, answer: handlers::Answer, elapsed: Duration) {
        self.shard.metrics.borrow_mut().record(answer.label, req.method, answer.status, elapsed);
    }
}
