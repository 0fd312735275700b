//! Configuration loading (`config::Config::from_yaml`, the YAML path of
//! `Config::load` without the environment and secrets) over arbitrary text.
//! A bad file must be an error that names the key, never a panic, a hang or
//! a huge allocation; a good one must give a router the service can build.
#![no_main]

use libfuzzer_sys::fuzz_target;
use push_cache::api::router::Router;
use push_cache::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_yaml(text) {
        Ok(config) => {
            let shards = config.shard_count().expect("validated configs have a shard count");
            assert!((1..=1024).contains(&shards));
            let router = Router::new(&config);
            assert_eq!(router.routes.len(), config.cache.routes.len());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
