//! Maps a request path to what it addresses: an item of a route, a route's
//! collection, or an operational endpoint. Methods are checked here too, so a
//! known path with the wrong method gets 405 with `Allow` in one place.

use crate::config::Config;
use crate::http::request::{percent_decode, split_target, Method};
use crate::http::response::{cache_control, ok_json_prefix};
use std::borrow::Cow;

/// One configured route, resolved at start-up.
#[derive(Debug)]
pub struct Route {
    /// `{prefix}{path}`, e.g. `/api/customers`.
    pub full_path: String,
    /// Index of the store in `cache.stores`.
    pub store: usize,
    pub key_field: String,
    /// The store's projection: top-level fields a write keeps (empty: all).
    pub fields: Vec<String>,
    /// Status line, content type and `Cache-Control` of a 200, pre-built.
    pub ok_prefix: Vec<u8>,
    /// The `Cache-Control` header line alone, for 304s.
    pub cache_control: Vec<u8>,
}

/// What a request path addresses.
#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    Item {
        route: usize,
        key: Cow<'a, str>,
    },
    Collection {
        route: usize,
        query: &'a [u8],
    },
    Live,
    Ready,
    Metrics,
    /// `/`: the status page for a person.
    StatusPage,
    /// `/status`: the status page's figures as JSON.
    Status,
    Offsets,
}

/// Why a path cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    /// A key that is not valid percent-encoded UTF-8.
    BadKey,
}

pub const ITEM_METHODS: &str = "GET, HEAD, PUT, DELETE";
pub const COLLECTION_METHODS: &str = "GET, HEAD, POST";
pub const OPS_METHODS: &str = "GET, HEAD";

#[derive(Debug)]
pub struct Router {
    pub routes: Vec<Route>,
}

impl Router {
    pub fn new(config: &Config) -> Router {
        let stores = &config.cache.stores;
        let routes = config
            .cache
            .routes
            .iter()
            .map(|r| {
                let store =
                    stores.iter().position(|s| s.name() == r.store).expect("routes are validated against stores");
                (r, store)
            })
            .map(|(r, store)| Route {
                full_path: format!("{}{}", config.webservice.prefix, r.path),
                store,
                key_field: r.key_field.clone(),
                fields: stores[store].fields().to_vec(),
                ok_prefix: ok_json_prefix(config.kafka.cache_max_age_seconds),
                cache_control: cache_control(config.kafka.cache_max_age_seconds),
            })
            .collect();
        Router { routes }
    }

    pub fn resolve<'a>(&self, target: &'a [u8]) -> Result<Target<'a>, Miss> {
        let (path, query) = split_target(target);
        match path {
            b"/health/live" => return Ok(Target::Live),
            b"/health/ready" => return Ok(Target::Ready),
            b"/metrics" => return Ok(Target::Metrics),
            b"/" => return Ok(Target::StatusPage),
            b"/status" => return Ok(Target::Status),
            b"/offsets" => return Ok(Target::Offsets),
            _ => {}
        }
        for (i, route) in self.routes.iter().enumerate() {
            let Some(rest) = path.strip_prefix(route.full_path.as_bytes()) else { continue };
            if rest.is_empty() {
                return Ok(Target::Collection { route: i, query });
            }
            if let Some(raw_key) = rest.strip_prefix(b"/").filter(|k| !k.is_empty()) {
                return decode_key(raw_key).map(|key| Target::Item { route: i, key });
            }
        }
        Err(Miss::NotFound)
    }
}

/// Keys are usually plain ASCII: borrow them without copying; decode only
/// when they carry `%` escapes.
fn decode_key(raw: &[u8]) -> Result<Cow<'_, str>, Miss> {
    if raw.contains(&b'%') {
        percent_decode(raw, false).map(Cow::Owned).ok_or(Miss::BadKey)
    } else {
        std::str::from_utf8(raw).map(Cow::Borrowed).map_err(|_| Miss::BadKey)
    }
}

impl Target<'_> {
    /// The route an item or collection target belongs to.
    pub fn route(&self) -> Option<usize> {
        match self {
            Target::Item { route, .. } | Target::Collection { route, .. } => Some(*route),
            _ => None,
        }
    }

    /// The methods this target answers, for 405's `Allow` header.
    pub fn allowed(&self) -> &'static str {
        match self {
            Target::Item { .. } => ITEM_METHODS,
            Target::Collection { .. } => COLLECTION_METHODS,
            _ => OPS_METHODS,
        }
    }

    pub fn allows(&self, method: Method) -> bool {
        matches!(
            (self, method),
            (_, Method::Get | Method::Head)
                | (Target::Item { .. }, Method::Put | Method::Delete)
                | (Target::Collection { .. }, Method::Post)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let yaml = "
kafka: {brokers: b, group_id: g, topic: t, schema_registry_url: 'http://r'}
cache:
  stores: [{name: a, type: in_memory}, {name: b, type: in_memory}]
  routes: [{path: /customers, store: b}, {path: /customers-archive, store: a}]
";
        Router::new(&Config::from_yaml(yaml).unwrap())
    }

    #[test]
    fn keys_are_encoded_for_location_and_decode_back() {
        use crate::http::encode_path_segment as encode_key;
        assert_eq!(encode_key("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_key("acct-1_a.b~"), "acct-1_a.b~");
        assert_eq!(encode_key("a/b c%"), "a%2Fb%20c%25");
        for key in ["a b/c", "acct-1", "é%?"] {
            assert_eq!(decode_key(encode_key(key).as_bytes()).ok().as_deref(), Some(key));
        }
    }

    #[test]
    fn items_collections_and_ops() {
        let r = router();
        assert_eq!(r.resolve(b"/api/customers/acct-1"), Ok(Target::Item { route: 0, key: "acct-1".into() }));
        assert_eq!(r.resolve(b"/api/customers?limit=2"), Ok(Target::Collection { route: 0, query: b"limit=2" }));
        assert_eq!(r.resolve(b"/api/customers-archive/x"), Ok(Target::Item { route: 1, key: "x".into() }));
        assert_eq!(r.routes[0].store, 1);
        assert_eq!(r.resolve(b"/health/ready"), Ok(Target::Ready));
        assert_eq!(r.resolve(b"/metrics?x"), Ok(Target::Metrics));
        assert_eq!(r.resolve(b"/"), Ok(Target::StatusPage));
        assert_eq!(r.resolve(b"/status"), Ok(Target::Status));
    }

    #[test]
    fn keys_are_percent_decoded() {
        let r = router();
        assert_eq!(r.resolve(b"/api/customers/a%20b%2Fc"), Ok(Target::Item { route: 0, key: "a b/c".into() }));
        assert_eq!(r.resolve(b"/api/customers/%ff"), Err(Miss::BadKey));
    }

    #[test]
    fn unknown_paths_are_not_found() {
        let r = router();
        for p in [&b"/api"[..], b"/api/customers/", b"/api/customersx/1", b"/api/other/1", b"/health"] {
            assert_eq!(r.resolve(p), Err(Miss::NotFound), "{}", String::from_utf8_lossy(p));
        }
    }

    #[test]
    fn methods_per_target() {
        let item = Target::Item { route: 0, key: "k".into() };
        assert!(item.allows(Method::Delete) && item.allows(Method::Put) && !item.allows(Method::Post));
        let coll = Target::Collection { route: 0, query: b"" };
        assert!(coll.allows(Method::Post) && !coll.allows(Method::Delete) && !coll.allows(Method::Put));
        assert!(!Target::Live.allows(Method::Put));
        assert_eq!(Target::Live.allowed(), OPS_METHODS);
    }
}
