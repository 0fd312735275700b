//! Readiness: the set of things the service still waits for before it may
//! serve as the authoritative endpoint (initial catch-up, a reachable broker,
//! registry or store). `/health/ready` is 200 only while the set is empty.
//!
//! Written rarely (by the consumer and store clients), read only by
//! `/health/ready` and `/metrics`: a mutex is fine here, off the GET path.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default, Debug)]
pub struct Readiness {
    waiting: Mutex<BTreeMap<String, String>>,
}

impl Readiness {
    /// Marks `what` as not ready, saying why (replaces an earlier reason).
    pub fn wait_for(&self, what: &str, why: impl Into<String>) {
        self.lock().insert(what.to_string(), why.into());
    }

    /// Marks `what` as ready.
    pub fn done(&self, what: &str) {
        self.lock().remove(what);
    }

    pub fn is_ready(&self) -> bool {
        self.lock().is_empty()
    }

    /// What is still awaited, by name, with the reason.
    pub fn waiting(&self) -> BTreeMap<String, String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding this lock cannot leave the map half-written.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_nothing_is_awaited() {
        let r = Readiness::default();
        assert!(r.is_ready());
        r.wait_for("kafka", "catching up: 10 of 100 records");
        r.wait_for("registry", "unreachable");
        assert!(!r.is_ready());
        r.done("kafka");
        assert_eq!(r.waiting().keys().collect::<Vec<_>>(), vec!["registry"]);
        r.done("registry");
        assert!(r.is_ready());
    }
}
