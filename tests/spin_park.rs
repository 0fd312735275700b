//! How a shard waits for work, on the real binary: without
//! `runtime.spin_before_park_us` an idle shard sleeps and uses no CPU, and
//! reads are bounded by the sweeper's deadlines, not by a busy timer; with
//! it, a shard spinning between requests sees the next request as soon as it
//! arrives, not when the spin ends (the rings use `COOP_TASKRUN`, which
//! posts socket completions only when the thread enters the kernel: this
//! guards against a spin loop that would never do so), and parks afterwards.

mod common;

use common::{config_yaml, read_response, Server, KAFKA_NOWHERE};
use std::io::Write;
use std::time::{Duration, Instant};

fn start(runtime: &str) -> Server {
    let port = common::free_port();
    let rest = format!(
        "{KAFKA_NOWHERE}cache:
  stores: [{{name: main, type: in_memory}}]
  routes: [{{path: /customers, store: main}}]
runtime: {runtime}
"
    );
    Server::start_yaml(&config_yaml(port, "", &rest), port, &[])
}

/// CPU time (user + system) of the server's shard threads so far.
fn shard_cpu(server: &Server) -> Duration {
    let tck = 100; // USER_HZ on Linux
    let mut ticks = 0u64;
    for task in std::fs::read_dir(format!("/proc/{}/task", server.pid())).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("shard-") {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    Duration::from_millis(ticks * 1000 / tck)
}

/// Median time of `n` requests sent one at a time on one connection,
/// `pause` apart.
fn median_latency(server: &Server, n: usize, pause: Duration) -> Duration {
    let mut s = server.connect();
    let mut pending = Vec::new();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        std::thread::sleep(pause);
        let started = Instant::now();
        s.write_all(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s, &mut pending, false).status, 200);
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[test]
fn a_spinning_shard_sees_requests_as_they_arrive() {
    // Spins 300 ms after each piece of work: a request 20 ms after the last
    // one arrives while the shard spins.
    let server = start("{shards: 1, spin_before_park_us: 300000}");
    let median = median_latency(&server, 9, Duration::from_millis(20));
    assert!(median < Duration::from_millis(50), "median {median:?}: the spin loop missed the socket's completion");
}

#[test]
fn an_idle_shard_uses_no_cpu_and_a_spinning_one_stops_after_its_spin() {
    let server = start("{shards: 1}");
    let _idle_connection = server.connect();
    median_latency(&server, 3, Duration::ZERO);
    std::thread::sleep(Duration::from_millis(200));
    let before = shard_cpu(&server);
    std::thread::sleep(Duration::from_secs(2));
    let used = shard_cpu(&server) - before;
    assert!(used <= Duration::from_millis(30), "an idle shard used {used:?} of CPU in 2 s");

    let server = start("{shards: 1, spin_before_park_us: 100000}");
    let _idle_connection = server.connect();
    median_latency(&server, 3, Duration::ZERO);
    std::thread::sleep(Duration::from_millis(300));
    let before = shard_cpu(&server);
    std::thread::sleep(Duration::from_secs(2));
    let used = shard_cpu(&server) - before;
    assert!(used <= Duration::from_millis(30), "a shard spinning 100 ms used {used:?} of CPU in 2 idle s");
}
