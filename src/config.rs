//! Configuration: a YAML file merged with `APP_` environment variables and a
//! secrets directory, loaded with figment.
//!
//! Every struct denies unknown keys, so a typo stops start-up instead of being
//! silently ignored; errors name the key and what was expected.

use figment::providers::{Env, Format, Yaml};
use figment::Figment;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Why the configuration could not be used. Each message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0}")]
    Figment(Box<figment::Error>),
    #[error("configuration error: cannot read secrets directory {dir}: {source}")]
    Secrets { dir: String, source: std::io::Error },
    #[error("configuration error: key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Figment(Box::new(e))
    }
}

/// A Redis store names one server (`url`) or a cluster (`cluster_nodes`), not both.
fn validate_redis_target(i: usize, url: Option<&str>, nodes: &[String]) -> Result<(), ConfigError> {
    let is_url = |u: &str| u.contains("://") && redis::parse_redis_url(u).is_some();
    let key = |field: &str| format!("cache.stores[{i}]{field}");
    match (url, nodes.is_empty()) {
        (Some(_), false) => {
            Err(invalid(key(""), "give either `url` (one Redis) or `cluster_nodes` (a Redis Cluster), not both"))
        }
        (None, true) => Err(invalid(
            key(".url"),
            "required: a URL like redis://host:6379, or `cluster_nodes: [redis://host:7000, ...]`",
        )),
        (Some(u), true) if !is_url(u) => {
            Err(invalid(key(".url"), "expected a URL like redis://[user:password@]host:6379[/db]"))
        }
        (None, false) => match nodes.iter().position(|n| !is_url(n)) {
            Some(j) => {
                let problem = "expected a URL like redis://[user:password@]host:7000";
                Err(invalid(key(&format!(".cluster_nodes[{j}]")), problem))
            }
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), problem: problem.into() }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub webservice: WebConfig,
    pub kafka: KafkaConfig,
    pub cache: CacheConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub snapshot: SnapshotConfig,
}

/// Warm restarts: where the shards write their snapshots and how often.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Directory of the snapshot files; `None` (the default): no snapshots.
    pub dir: Option<std::path::PathBuf>,
    /// Seconds between snapshots while serving (one is also written at stop).
    pub interval_seconds: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig { dir: None, interval_seconds: 300 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub address: String,
    pub prefix: String,
    pub admin_token: Option<String>,
    pub limits: Limits,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            address: "0.0.0.0:8080".into(),
            prefix: "/api".into(),
            admin_token: None,
            limits: Limits::default(),
        }
    }
}

/// Per-connection limits: header and body sizes, timeouts, waits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request line + header section, in bytes (431 above it).
    pub header_bytes: usize,
    /// Largest request body, in bytes (413 above it).
    pub body_bytes: usize,
    /// Time allowed to receive a request's header section (408 after it).
    pub header_timeout_ms: u64,
    /// Time an idle keep-alive connection is kept open.
    pub idle_timeout_ms: u64,
    /// Longest a GET with `min_offset` waits for its position (504 after it).
    pub min_offset_wait_ms: u64,
    /// Time allowed to receive a request's whole body, from the end of its head (408 after it).
    pub body_timeout_ms: u64,
    /// Longest a `writes: kafka` request waits for the broker's acknowledgement (503 after it).
    pub write_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_bytes: 16 * 1024,
            body_bytes: 1024 * 1024,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            min_offset_wait_ms: 1_000,
            body_timeout_ms: 30_000,
            write_timeout_ms: 5_000,
        }
    }
}

impl Limits {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn min_offset_wait(&self) -> Duration {
        Duration::from_millis(self.min_offset_wait_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub topic: Topics,
    pub schema_registry_url: String,
    #[serde(default = "default_max_age")]
    pub cache_max_age_seconds: u64,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// SASL credentials, usually from the secrets directory; passed to
    /// librdkafka as `sasl.username` / `sasl.password`.
    #[serde(default)]
    pub sasl_username: Option<String>,
    #[serde(default)]
    pub sasl_password: Option<String>,
    /// How message keys become cache keys: `auto` decodes keys in the
    /// Confluent wire format with their schema, `string` takes every key's bytes.
    #[serde(default)]
    pub key_format: KeyFormat,
}

/// `kafka.key_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyFormat {
    /// A key framed as Confluent Avro, Protobuf or JSON Schema with a schema
    /// the registry knows is decoded; any other key is its UTF-8 text.
    #[default]
    Auto,
    /// Every key is its UTF-8 text.
    String,
}

fn default_redis_timeout() -> u64 {
    250
}

fn default_max_age() -> u64 {
    300
}

/// `topic` accepts one name or a list of names.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Topics {
    One(String),
    Many(Vec<String>),
}

impl Topics {
    pub fn names(&self) -> Vec<String> {
        match self {
            Topics::One(t) => t.split(',').map(|s| s.trim().to_string()).collect(),
            Topics::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    pub stores: Vec<StoreConfig>,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    InMemory {
        name: String,
        #[serde(default)]
        schemas: Vec<String>,
        /// Top-level fields each record keeps (empty: the whole record).
        #[serde(default)]
        fields: Vec<String>,
        /// `zstd`: keep bodies compressed with dictionaries trained on the records.
        #[serde(default)]
        compression: Option<Compression>,
    },
    Redis {
        name: String,
        /// One Redis server: `redis://[user:password@]host:6379[/db]`.
        #[serde(default)]
        url: Option<String>,
        /// The nodes of a Redis Cluster (any reachable subset): `redis://` URLs.
        #[serde(default)]
        cluster_nodes: Vec<String>,
        #[serde(default)]
        prefix: Option<String>,
        #[serde(default)]
        schemas: Vec<String>,
        /// Top-level fields each record keeps (empty: the whole record).
        #[serde(default)]
        fields: Vec<String>,
        /// How long a request waits for Redis before answering 503.
        #[serde(default = "default_redis_timeout")]
        timeout_ms: u64,
    },
}

/// How an in-memory store keeps its bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    Zstd,
}

impl StoreConfig {
    /// True for an in-memory store with `compression: zstd`.
    pub fn compressed(&self) -> bool {
        matches!(self, StoreConfig::InMemory { compression: Some(Compression::Zstd), .. })
    }

    pub fn name(&self) -> &str {
        match self {
            StoreConfig::InMemory { name, .. } | StoreConfig::Redis { name, .. } => name,
        }
    }

    pub fn schemas(&self) -> &[String] {
        match self {
            StoreConfig::InMemory { schemas, .. } | StoreConfig::Redis { schemas, .. } => schemas,
        }
    }

    /// The projection: top-level fields each record keeps (empty: all).
    pub fn fields(&self) -> &[String] {
        match self {
            StoreConfig::InMemory { fields, .. } | StoreConfig::Redis { fields, .. } => fields,
        }
    }

    /// Whether records of `record_type` go to this store (empty list: all).
    /// A filter may be written as the type (`customer`) or as the schema's
    /// full name (`com.acme.Customer`): the namespace or package is dropped,
    /// as it is for the record type.
    pub fn accepts(&self, record_type: &str) -> bool {
        let s = self.schemas();
        s.is_empty() || s.iter().any(|t| t.rsplit('.').next().unwrap_or(t).eq_ignore_ascii_case(record_type))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub path: String,
    pub store: String,
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// Where POST, PUT and DELETE go: the cache (default) or `topic` in Kafka.
    #[serde(default)]
    pub writes: Writes,
    /// The topic `writes: kafka` produces to; one of `kafka.topic`.
    #[serde(default)]
    pub topic: Option<String>,
}

/// `writes: cache` changes the cache only; `writes: kafka` produces the
/// write to the route's topic and answers once it is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Writes {
    #[default]
    Cache,
    Kafka,
}

fn default_key_field() -> String {
    "accountId".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub shards: Shards,
    pub cores: Option<CoreList>,
    /// Microseconds a shard spins looking for work before it sleeps. 0 (the
    /// default) never spins, so an idle server uses no CPU.
    pub spin_before_park_us: u64,
    /// How the in-memory stores' keys are placed on the shards.
    pub index: IndexMode,
}

/// `runtime.index`: `partitioned` (the default) gives each key one owner
/// shard, which others ask over the mesh; `replicated` gives every shard an
/// index of every key over the same shared entries, so no read is forwarded,
/// at the cost of one table slot per key per shard and every change applied
/// on every shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexMode {
    #[default]
    Partitioned,
    Replicated,
}

/// `shards: auto` or a number.
#[derive(Debug, Clone, Default)]
pub enum Shards {
    #[default]
    Auto,
    Count(usize),
}

impl<'de> Deserialize<'de> for Shards {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Shards;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`auto` or a number of shards")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Shards, E> {
                Ok(Shards::Count(n as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Shards, E> {
                usize::try_from(n)
                    .map(Shards::Count)
                    .map_err(|_| E::custom("expected `auto` or a positive number of shards"))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Shards, E> {
                match s {
                    "auto" => Ok(Shards::Auto),
                    n => n
                        .parse()
                        .map(Shards::Count)
                        .map_err(|_| E::custom(format!("expected `auto` or a number of shards, found `{s}`"))),
                }
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `cores: [0, 1]` or `cores: "0-3,6"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CoreList {
    List(Vec<usize>),
    Text(String),
}

impl CoreList {
    pub fn cpus(&self) -> Result<Vec<usize>, ConfigError> {
        match self {
            CoreList::List(v) => Ok(v.clone()),
            CoreList::Text(t) => parse_cpu_list(t),
        }
    }
}

/// More CPUs than shards can use (`runtime.shards` is at most 1024); the cap
/// keeps a range like `0-4000000000` an error instead of a huge allocation.
const MAX_CPUS: usize = 1024;

fn parse_cpu_list(text: &str) -> Result<Vec<usize>, ConfigError> {
    let bad = || invalid("runtime.cores", format!("expected a CPU list like `0-3,6`, found `{text}`"));
    let too_many = || invalid("runtime.cores", format!("lists more than {MAX_CPUS} CPUs; list one CPU per shard"));
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                if (b - a).saturating_add(1).saturating_add(cpus.len()) > MAX_CPUS {
                    return Err(too_many());
                }
                cpus.extend(a..=b);
            }
            None if cpus.len() >= MAX_CPUS => return Err(too_many()),
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

impl Config {
    /// Loads the YAML file, then `APP_` variables, then the secrets directory
    /// (later sources win), and validates the result.
    pub fn load(path: &Path, secrets: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::new().merge(Yaml::file_exact(path)).merge(Env::prefixed("APP_").split("__"));
        if let Some(dir) = secrets {
            fig = merge_secrets(fig, dir)?;
        }
        let config: Config = fig.extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Parses YAML text alone (tests, tools).
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = Figment::new().merge(Yaml::string(text)).extract()?;
        config.validate()?;
        Ok(config)
    }

    /// The number of shards to run, resolved against the usable CPUs.
    pub fn shard_count(&self) -> Result<usize, ConfigError> {
        let n = match self.runtime.shards {
            Shards::Count(n) => n,
            Shards::Auto => match &self.runtime.cores {
                Some(c) => c.cpus()?.len(),
                None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            },
        };
        Ok(n)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let web = &self.webservice;
        web.address.parse::<std::net::SocketAddr>().map_err(|_| {
            invalid("webservice.address", format!("expected host:port like 0.0.0.0:8080, found `{}`", web.address))
        })?;
        if !(web.prefix.is_empty() || web.prefix.starts_with('/') && !web.prefix.ends_with('/')) {
            return Err(invalid(
                "webservice.prefix",
                "expected empty or a path like `/api` (leading slash, no trailing slash)",
            ));
        }
        let limits = &web.limits;
        let timeouts =
            [limits.header_timeout_ms, limits.idle_timeout_ms, limits.body_timeout_ms, limits.write_timeout_ms];
        if web.limits.header_bytes < 256 || timeouts.contains(&0) {
            return Err(invalid("webservice.limits", "header_bytes must be at least 256 and timeouts above 0"));
        }
        self.validate_kafka()?;
        self.validate_cache()?;
        self.validate_runtime()?;
        if self.snapshot.dir.is_some() && self.snapshot.interval_seconds == 0 {
            return Err(invalid("snapshot.interval_seconds", "must be above 0"));
        }
        Ok(())
    }

    fn validate_kafka(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        for (key, value) in [
            ("kafka.brokers", &k.brokers),
            ("kafka.group_id", &k.group_id),
            ("kafka.schema_registry_url", &k.schema_registry_url),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if k.topic.names().iter().any(|t| t.is_empty()) || k.topic.names().is_empty() {
            return Err(invalid("kafka.topic", "expected a topic name or a list of names"));
        }
        if !(k.schema_registry_url.starts_with("http://") || k.schema_registry_url.starts_with("https://")) {
            return Err(invalid("kafka.schema_registry_url", "expected an http:// or https:// URL"));
        }
        Ok(())
    }

    fn validate_cache(&self) -> Result<(), ConfigError> {
        let stores = &self.cache.stores;
        if stores.is_empty() {
            return Err(invalid("cache.stores", "expected at least one store"));
        }
        for (i, s) in stores.iter().enumerate() {
            if s.name().is_empty() {
                return Err(invalid(format!("cache.stores[{i}].name"), "must not be empty"));
            }
            if stores[..i].iter().any(|o| o.name() == s.name()) {
                return Err(invalid(format!("cache.stores[{i}].name"), format!("duplicate store name `{}`", s.name())));
            }
            if let Some(j) = s.fields().iter().position(|f| f.trim().is_empty()) {
                return Err(invalid(
                    format!("cache.stores[{i}].fields[{j}]"),
                    "expected a top-level field name, not an empty one",
                ));
            }
            if let StoreConfig::Redis { url, cluster_nodes, timeout_ms, .. } = s {
                validate_redis_target(i, url.as_deref(), cluster_nodes)?;
                if *timeout_ms == 0 {
                    return Err(invalid(format!("cache.stores[{i}].timeout_ms"), "must be above 0"));
                }
            }
        }
        if self.cache.routes.is_empty() {
            return Err(invalid("cache.routes", "expected at least one route"));
        }
        for (i, r) in self.cache.routes.iter().enumerate() {
            let key = |f: &str| format!("cache.routes[{i}].{f}");
            if !r.path.starts_with('/') || r.path.len() < 2 || r.path.ends_with('/') || r.path.contains('?') {
                return Err(invalid(key("path"), format!("expected a path like `/customers`, found `{}`", r.path)));
            }
            if !stores.iter().any(|s| s.name() == r.store) {
                return Err(invalid(key("store"), format!("no store named `{}` in cache.stores", r.store)));
            }
            if self.cache.routes[..i].iter().any(|o| o.path == r.path) {
                return Err(invalid(key("path"), format!("duplicate route `{}`", r.path)));
            }
            if r.key_field.is_empty() {
                return Err(invalid(key("key_field"), "must not be empty"));
            }
            self.validate_writes(i, r)?;
        }
        Ok(())
    }

    /// `writes: kafka` needs a topic the cache consumes (so a write can wait
    /// until its record is applied); a topic alone is a mistake.
    fn validate_writes(&self, i: usize, r: &RouteConfig) -> Result<(), ConfigError> {
        let key = |f: &str| format!("cache.routes[{i}].{f}");
        match (r.writes, &r.topic) {
            (Writes::Cache, None) => Ok(()),
            (Writes::Cache, Some(_)) => {
                Err(invalid(key("topic"), "is used only with `writes: kafka`; add it or drop topic"))
            }
            (Writes::Kafka, None) => Err(invalid(key("topic"), "`writes: kafka` needs the topic to produce to")),
            (Writes::Kafka, Some(t)) if !self.kafka.topic.names().contains(t) => Err(invalid(
                key("topic"),
                format!("`{t}` is not among kafka.topic; a write must go to a topic the cache consumes"),
            )),
            (Writes::Kafka, Some(_)) => Ok(()),
        }
    }

    fn validate_runtime(&self) -> Result<(), ConfigError> {
        let n = self.shard_count()?;
        if n == 0 || n > 1024 {
            return Err(invalid("runtime.shards", "expected `auto` or a number from 1 to 1024"));
        }
        let compressed = self.cache.stores.iter().find(|s| s.compressed());
        if let (IndexMode::Replicated, Some(store)) = (self.runtime.index, compressed) {
            return Err(invalid(
                "runtime.index",
                format!(
                    "`replicated` cannot hold store `{}` with `compression: zstd` (each shard trains its own \
                     dictionaries); use `index: partitioned` or drop the compression",
                    store.name()
                ),
            ));
        }
        if let Some(cores) = &self.runtime.cores {
            let cpus = cores.cpus()?;
            if cpus.len() < n {
                return Err(invalid(
                    "runtime.cores",
                    format!("lists {} CPUs for {n} shards; give one CPU per shard", cpus.len()),
                ));
            }
        }
        Ok(())
    }
}

/// Every regular file in `dir` named like a key (`kafka.sasl_password`) is
/// merged in with its contents, trailing newline removed. Symlinks are
/// followed (a Kubernetes Secret volume links each key into `..data/`). A
/// missing directory is fine: secrets are optional.
fn merge_secrets(mut fig: Figment, dir: &Path) -> Result<Figment, ConfigError> {
    let err = |source| ConfigError::Secrets { dir: dir.display().to_string(), source };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(fig),
        Err(e) => return Err(err(e)),
    };
    for entry in entries {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !std::fs::metadata(entry.path()).map_err(err)?.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).map_err(err)?;
        fig = fig.merge((name, text.trim_end_matches(['\n', '\r']).to_string()));
    }
    Ok(fig)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
kafka:
  brokers: localhost:9092
  group_id: push-cache
  topic: customers
  schema_registry_url: http://localhost:8081
cache:
  stores: [{name: main, type: in_memory}]
  routes: [{path: /customers, store: main}]
";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_yaml(MINIMAL).unwrap();
        assert_eq!(c.webservice.address, "0.0.0.0:8080");
        assert_eq!(c.webservice.prefix, "/api");
        assert_eq!(c.webservice.limits.header_bytes, 16384);
        assert_eq!(c.kafka.cache_max_age_seconds, 300);
        assert_eq!(c.cache.routes[0].key_field, "accountId");
        assert!(matches!(c.runtime.shards, Shards::Auto));
    }

    #[test]
    fn a_schemas_filter_matches_the_type_with_or_without_its_namespace() {
        let text = MINIMAL.replace(
            "{name: main, type: in_memory}",
            "{name: main, type: in_memory, schemas: [com.acme.Customer, bill]}",
        );
        let c = Config::from_yaml(&text).unwrap();
        let store = &c.cache.stores[0];
        assert!(store.accepts("customer"));
        assert!(store.accepts("bill"));
        assert!(!store.accepts("usage"));
        assert!(!store.accepts("acme"));
    }

    #[test]
    fn index_is_partitioned_or_replicated_and_replicated_refuses_compression() {
        assert_eq!(Config::from_yaml(MINIMAL).unwrap().runtime.index, IndexMode::Partitioned);
        let replicated = format!("{MINIMAL}runtime: {{index: replicated}}");
        assert_eq!(Config::from_yaml(&replicated).unwrap().runtime.index, IndexMode::Replicated);
        let e = Config::from_yaml(&format!("{MINIMAL}runtime: {{index: everywhere}}")).unwrap_err().to_string();
        assert!(e.contains("runtime.index") || e.contains("index"), "{e}");
        let zstd = replicated.replace("type: in_memory}", "type: in_memory, compression: zstd}");
        let e = Config::from_yaml(&zstd).unwrap_err().to_string();
        assert!(e.contains("runtime.index") && e.contains("compression"), "{e}");
    }

    #[test]
    fn key_format_is_auto_or_string() {
        assert_eq!(Config::from_yaml(MINIMAL).unwrap().kafka.key_format, KeyFormat::Auto);
        let string = MINIMAL.replace("group_id: push-cache", "group_id: push-cache\n  key_format: string");
        assert_eq!(Config::from_yaml(&string).unwrap().kafka.key_format, KeyFormat::String);
        let bad = MINIMAL.replace("group_id: push-cache", "group_id: push-cache\n  key_format: avro");
        let e = Config::from_yaml(&bad).unwrap_err().to_string();
        assert!(e.contains("key_format") && e.contains("auto") && e.contains("string"), "{e}");
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let text = MINIMAL.replace("group_id", "groupid: x\n  group_id");
        let e = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(e.contains("groupid"), "{e}");
    }

    #[test]
    fn writes_through_kafka_need_a_consumed_topic() {
        let with = |route: &str| Config::from_yaml(&MINIMAL.replace("store: main}", route)).map_err(|e| e.to_string());
        let ok = with("store: main, writes: kafka, topic: customers}").unwrap();
        assert_eq!(
            (ok.cache.routes[0].writes, ok.cache.routes[0].topic.as_deref()),
            (Writes::Kafka, Some("customers"))
        );
        assert_eq!(Config::from_yaml(MINIMAL).unwrap().cache.routes[0].writes, Writes::Cache);
        let e = with("store: main, writes: kafka}").unwrap_err();
        assert!(e.contains("cache.routes[0].topic") && e.contains("needs the topic"), "{e}");
        let e = with("store: main, writes: kafka, topic: other}").unwrap_err();
        assert!(e.contains("cache.routes[0].topic") && e.contains("not among kafka.topic"), "{e}");
        let e = with("store: main, topic: customers}").unwrap_err();
        assert!(e.contains("only with `writes: kafka`"), "{e}");
        let e = with("store: main, writes: maybe}").unwrap_err();
        assert!(e.contains("writes"), "{e}");
    }

    #[test]
    fn route_to_missing_store_is_rejected() {
        let text = MINIMAL.replace("store: main}", "store: nope}");
        let e = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(e.contains("cache.routes[0].store") && e.contains("nope"), "{e}");
    }

    #[test]
    fn duplicate_store_names_are_rejected() {
        let text = MINIMAL.replace(
            "[{name: main, type: in_memory}]",
            "[{name: main, type: in_memory}, {name: main, type: in_memory}]",
        );
        let e = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(e.contains("duplicate store name"), "{e}");
    }

    #[test]
    fn redis_store_needs_redis_url() {
        let text = MINIMAL.replace("{name: main, type: in_memory}", "{name: main, type: redis, url: 'http://x'}");
        let e = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(e.contains("cache.stores[0].url"), "{e}");
    }

    #[test]
    fn redis_store_takes_url_xor_cluster_nodes() {
        let with = |store: &str| Config::from_yaml(&MINIMAL.replace("{name: main, type: in_memory}", store));
        let both = with("{name: main, type: redis, url: 'redis://a:1', cluster_nodes: ['redis://b:2']}");
        assert!(both.unwrap_err().to_string().contains("not both"));
        let neither = with("{name: main, type: redis}").unwrap_err().to_string();
        assert!(neither.contains("cache.stores[0].url") && neither.contains("cluster_nodes"), "{neither}");
        let bad = with("{name: main, type: redis, cluster_nodes: ['redis://b:2', 'b:3']}").unwrap_err().to_string();
        assert!(bad.contains("cache.stores[0].cluster_nodes[1]"), "{bad}");
        assert!(with("{name: main, type: redis, cluster_nodes: ['redis://b:2', 'redis://c:3']}").is_ok());
    }

    #[test]
    fn shards_and_cores_parse() {
        let c = Config::from_yaml(&format!("{MINIMAL}runtime: {{shards: 2, cores: '0-1'}}")).unwrap();
        assert_eq!(c.shard_count().unwrap(), 2);
        assert_eq!(c.runtime.cores.unwrap().cpus().unwrap(), vec![0, 1]);
        let e = Config::from_yaml(&format!("{MINIMAL}runtime: {{shards: many}}")).unwrap_err().to_string();
        assert!(e.contains("shards"), "{e}");
        let e = Config::from_yaml(&format!("{MINIMAL}runtime: {{shards: 3, cores: [0]}}")).unwrap_err().to_string();
        assert!(e.contains("runtime.cores"), "{e}");
    }

    #[test]
    fn huge_cpu_ranges_are_an_error_not_an_allocation() {
        // `0-4000000000` used to allocate 32 GB and abort (fuzz: config_load).
        for cores in ["0-4000000000", "0-18446744073709551615", "0-1024", "0-600,0-600"] {
            let e = Config::from_yaml(&format!("{MINIMAL}runtime: {{shards: 1, cores: '{cores}'}}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("runtime.cores") && e.contains("more than 1024 CPUs"), "{cores}: {e}");
        }
        let c = Config::from_yaml(&format!("{MINIMAL}runtime: {{shards: 2, cores: '0-1023'}}")).unwrap();
        assert_eq!(c.runtime.cores.unwrap().cpus().unwrap().len(), 1024);
    }

    #[test]
    fn wrong_type_names_key() {
        let text = format!("{MINIMAL}webservice: {{limits: {{body_bytes: lots}}}}");
        let e = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(e.contains("body_bytes"), "{e}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let text = MINIMAL.replace("  group_id: push-cache\n", "");
        let e = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(e.contains("group_id"), "{e}");
    }

    #[test]
    fn secrets_and_env_are_merged() {
        let dir = std::env::temp_dir().join(format!("pc-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(&file, MINIMAL).unwrap();
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(secrets.join("kafka.sasl_password"), "s3cret\n").unwrap();
        std::fs::write(secrets.join("webservice.admin_token"), "tok").unwrap();
        let c = Config::load(&file, Some(&secrets)).unwrap();
        assert_eq!(c.kafka.sasl_password.as_deref(), Some("s3cret"));
        assert_eq!(c.webservice.admin_token.as_deref(), Some("tok"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A Kubernetes Secret volume: each key is a symlink into `..data/`.
    #[test]
    fn secrets_behind_symlinks_are_read() {
        let dir = std::env::temp_dir().join(format!("pc-secrets-link-{}", std::process::id()));
        let data = dir.join("secrets/..2026_01_01_00_00_00.1/");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("kafka.sasl_password"), "from-a-secret").unwrap();
        std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", dir.join("secrets/..data")).unwrap();
        std::os::unix::fs::symlink("..data/kafka.sasl_password", dir.join("secrets/kafka.sasl_password")).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(&file, MINIMAL).unwrap();
        let c = Config::load(&file, Some(&dir.join("secrets"))).unwrap();
        assert_eq!(c.kafka.sasl_password.as_deref(), Some("from-a-secret"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
