//! A Redis store's readiness, from three things seen by different threads:
//! whether Redis answers PING (the `redis-io` thread), whether the feed's
//! last write succeeded, and whether the feed has caught up with the
//! watermarks seen at its start. The store is ready only when all three are
//! fine: a PING that succeeds does not hide writes that fail (`-OOM`,
//! `-READONLY`); only a write that succeeds clears a write failure.

use crate::readiness::Readiness;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    unreachable: Option<String>,
    write_failing: Option<String>,
    catching_up: Option<String>,
}

pub struct StoreHealth {
    key: String,
    readiness: Arc<Readiness>,
    state: Mutex<State>,
}

impl StoreHealth {
    /// Not ready until Redis answers and the feed has caught up.
    pub fn new(key: &str, readiness: Arc<Readiness>) -> StoreHealth {
        let state = State {
            unreachable: Some("connecting".into()),
            write_failing: None,
            catching_up: Some("the feed is starting".into()),
        };
        let health = StoreHealth { key: key.to_string(), readiness, state: Mutex::new(state) };
        health.update(|_| {});
        health
    }

    /// The outcome of a PING.
    pub fn reachable(&self, outcome: Result<(), String>) {
        self.update(|s| s.unreachable = outcome.err());
    }

    /// The outcome of the feed's latest write.
    pub fn write(&self, outcome: Result<(), String>) {
        self.update(|s| s.write_failing = outcome.err().map(|e| format!("writes failing, its feed waits: {e}")));
    }

    /// The feed's catch-up: `Some(progress)` while behind, `None` once done.
    pub fn catching_up(&self, progress: Option<String>) {
        self.update(|s| s.catching_up = progress);
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut state);
        let reasons: Vec<&str> = [&state.unreachable, &state.write_failing, &state.catching_up]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if reasons.is_empty() {
            self.readiness.done(&self.key);
        } else {
            self.readiness.wait_for(&self.key, reasons.join("; "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_does_not_clear_a_failing_write() {
        let readiness = Arc::new(Readiness::default());
        let h = StoreHealth::new("redis:s", readiness.clone());
        h.reachable(Ok(()));
        h.catching_up(None);
        assert!(readiness.is_ready());
        h.write(Err("OOM command not allowed".into()));
        h.reachable(Ok(()));
        assert!(!readiness.is_ready());
        assert!(readiness.waiting()["redis:s"].contains("OOM"));
        h.write(Ok(()));
        assert!(readiness.is_ready());
    }
}
