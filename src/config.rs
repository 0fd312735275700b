//! Configuration: a YAML file merged with `APP_` environment variables and a
//! secrets directory, loaded with figment (SPEC section 4).
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

/// Per-connection limits of SPEC section 3.
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_bytes: 16 * 1024,
            body_bytes: 1024 * 1024,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
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
    },
    Redis {
        name: String,
        url: String,
        #[serde(default)]
        prefix: Option<String>,
        #[serde(default)]
        schemas: Vec<String>,
        /// How long a request waits for Redis before answering 503.
        #[serde(default = "default_redis_timeout")]
        timeout_ms: u64,
    },
}

impl StoreConfig {
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

    /// Whether records of `record_type` go to this store (empty list: all).
    pub fn accepts(&self, record_type: &str) -> bool {
        let s = self.schemas();
        s.is_empty() || s.iter().any(|t| t.eq_ignore_ascii_case(record_type))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub path: String,
    pub store: String,
    #[serde(default = "default_key_field")]
    pub key_field: String,
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
                usize::try_from(n).map(Shards::Count).map_err(|_| E::custom("expected `auto` or a positive number of shards"))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Shards, E> {
                match s {
                    "auto" => Ok(Shards::Auto),
                    n => n.parse().map(Shards::Count).map_err(|_| E::custom(format!("expected `auto` or a number of shards, found `{s}`"))),
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
            return Err(invalid("webservice.prefix", "expected empty or a path like `/api` (leading slash, no trailing slash)"));
        }
        if web.limits.header_bytes < 256 || web.limits.header_timeout_ms == 0 || web.limits.idle_timeout_ms == 0 {
            return Err(invalid("webservice.limits", "header_bytes must be at least 256 and timeouts above 0"));
        }
        self.validate_kafka()?;
        self.validate_cache()?;
        self.validate_runtime()
    }

    fn validate_kafka(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        for (key, value) in [("kafka.brokers", &k.brokers), ("kafka.group_id", &k.group_id), ("kafka.schema_registry_url", &k.schema_registry_url)] {
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
            if let StoreConfig::Redis { url, timeout_ms, .. } = s {
                if redis::parse_redis_url(url).is_none() || !url.contains("://") {
                    return Err(invalid(format!("cache.stores[{i}].url"), "expected a URL like redis://[user:password@]host:6379[/db]"));
                }
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
        }
        Ok(())
    }

    fn validate_runtime(&self) -> Result<(), ConfigError> {
        let n = self.shard_count()?;
        if n == 0 || n > 1024 {
            return Err(invalid("runtime.shards", "expected `auto` or a number from 1 to 1024"));
        }
        if let Some(cores) = &self.runtime.cores {
            let cpus = cores.cpus()?;
            if cpus.len() < n {
                return Err(invalid("runtime.cores", format!("lists {} CPUs for {n} shards; give one CPU per shard", cpus.len())));
            }
        }
        Ok(())
    }
}

/// Every regular file in `dir` named like a key (`kafka.sasl_password`) is
/// merged in with its contents, trailing newline removed. A missing directory
/// is fine: secrets are optional.
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
        if name.starts_with('.') || !entry.file_type().map_err(err)?.is_file() {
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
    fn unknown_key_is_rejected_by_name() {
        let text = MINIMAL.replace("group_id", "groupid: x\n  group_id");
        let e = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(e.contains("groupid"), "{e}");
    }

    #[test]
    fn route_to_missing_store_is_rejected() {
        let text = MINIMAL.replace("store: main}", "store: nope}");
        let e = Config::from_yaml(&text).unwrap_err().to_string();
        assert!(e.contains("cache.routes[0].store") && e.contains("nope"), "{e}");
    }

    #[test]
    fn duplicate_store_names_are_rejected() {
        let text = MINIMAL.replace("[{name: main, type: in_memory}]", "[{name: main, type: in_memory}, {name: main, type: in_memory}]");
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
            let e = Config::from_yaml(&format!("{MINIMAL}runtime: {{shards: 1, cores: '{cores}'}}")).unwrap_err().to_string();
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
}
