//! What `deploy/` ships, checked offline by `scripts/check-deploy.py`: the
//! Grafana dashboard and alerts query only metrics the real binary exports,
//! the alerting rules pass `promtool check` and their unit tests, the
//! systemd unit passes `systemd-analyze verify` with a low exposure score,
//! the Kubernetes manifests validate and keep their promises, and the seccomp
//! profile lets io_uring through. A missing tool fails the test with what to
//! install (scripts/install-deps.sh installs them all).

mod common;

use common::*;
use std::process::{Command, Output};

fn check(args: &[&str]) -> Output {
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-deploy.py"))
        .args(args)
        .output()
        .expect("python3 runs scripts/check-deploy.py");
    eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn passes(args: &[&str]) {
    let out = check(args);
    assert!(out.status.success(), "check-deploy.py {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn dashboard_and_alerts_query_only_exported_metrics() {
    let server = Server::start("");
    let (status, text) = http_get(&server, "/metrics");
    assert_eq!(status, 200);
    let metrics = server.dir.join("metrics.txt");
    std::fs::write(&metrics, text).unwrap();
    passes(&["metric-names", metrics.to_str().unwrap()]);

    // The check itself catches a name the service does not export.
    let dashboard_path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/push-cache.json");
    let dashboard = std::fs::read_to_string(dashboard_path).unwrap();
    let wrong = server.dir.join("wrong.json");
    std::fs::write(&wrong, dashboard.replacen("push_cache_kafka_lag{", "push_cache_kafka_lagg{", 1)).unwrap();
    let out = check(&["metric-names", metrics.to_str().unwrap(), "--dashboard", wrong.to_str().unwrap()]);
    assert!(!out.status.success(), "a misspelt metric must fail the check");
    assert!(String::from_utf8_lossy(&out.stderr).contains("push_cache_kafka_lagg is not exported"));
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    passes(&["alerts"]);
}

#[test]
fn systemd_unit_verifies() {
    passes(&["systemd", env!("CARGO_BIN_EXE_push-cache")]);
}

#[test]
fn kubernetes_manifests_validate_and_keep_their_promises() {
    passes(&["kubernetes"]);
}

#[test]
fn seccomp_profile_lets_io_uring_through() {
    passes(&["seccomp"]);
}
