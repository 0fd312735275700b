#!/usr/bin/env python3
"""Offline checks of what deploy/ ships; run by tests/deploy_checks.rs.

  metric-names METRICS_FILE [--dashboard F] [--alerts F]
      every metric a Grafana query or an alert uses is one the service
      exports (METRICS_FILE: a /metrics answer of a running server) or one
      of ADDED_THIS_ROUND below
  alerts       promtool check rules + promtool test rules
  systemd BIN  systemd-analyze verify (ExecStart pointed at BIN) and an
               exposure score of at most MAX_EXPOSURE
  kubernetes   kubernetes-validate --strict, then what the manifests promise:
               guaranteed QoS with whole CPUs, probes on the health
               endpoints, the secrets dir mounted where --secrets points,
               a group id per pod
  seccomp      the seccomp profile allows what the service needs (io_uring)

Needs promtool (Debian: prometheus), systemd-analyze (systemd), PyPI's
kubernetes-validate and pyyaml; scripts/install-deps.sh installs them.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")

# Metrics that other changes of this round add; the dashboard and alerts may
# use them before the server here exports them. Each with its kind, so a
# histogram's _bucket/_sum/_count series are known too. Keep this short:
# once a name is exported, delete it here.
ADDED_THIS_ROUND = {
    "push_cache_staleness_seconds": "histogram",  # per topic: record timestamp to visible
    "push_cache_newest_record_age_seconds": "gauge",  # per partition
    "push_cache_snapshot_age_seconds": "gauge",  # snapshots (snapshot.dir)
    "push_cache_snapshot_bytes": "gauge",
}

PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                "group_left", "group_right", "inf", "nan", "atan2"}
MAX_EXPOSURE = 2.0


def fail(msg):
    print(f"FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def run(args, **kw):
    if shutil.which(args[0]) is None:
        fail(f"{args[0]} is not installed: run scripts/install-deps.sh")
    return subprocess.run(args, capture_output=True, text=True, **kw)


def series_names(kind, name):
    if kind == "histogram":
        return {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "summary":
        return {name, f"{name}_sum", f"{name}_count"}
    return {name}


def exported_names(metrics_text):
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names |= series_names(kind.strip(), name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def metric_names(expr):
    """The metric names a PromQL expression reads."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\$\{?\w+\}?", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        before = e[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":
            continue  # a number's exponent or a duration's unit
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def dashboard_queries(path):
    with open(path) as f:
        dash = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and q:
            m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", q)
            out.append((f"variable {v['name']}", m.group(1) if m else q))
    return out


def alert_queries(path):
    with open(path) as f:
        rules = yaml.safe_load(f)
    return [(f"alert {r.get('alert') or r.get('record')}", r["expr"])
            for g in rules["groups"] for r in g["rules"]]


def check_metric_names(args):
    with open(args.metrics_file) as f:
        exported = exported_names(f.read())
    if "push_cache_http_requests_total" not in exported:
        fail(f"{args.metrics_file} does not look like push-cache's /metrics")
    allowed = set(exported)
    for name, kind in ADDED_THIS_ROUND.items():
        allowed |= series_names(kind, name)
    queries = dashboard_queries(args.dashboard) + alert_queries(args.alerts)
    if len(queries) < 10:
        fail(f"only {len(queries)} queries found: the files were not read as expected")
    bad = []
    for where, expr in queries:
        names = metric_names(expr)
        if not names:
            bad.append(f"{where}: no metric in {expr!r}")
        bad += [f"{where}: {n} is not exported" for n in sorted(names - allowed)]
    if bad:
        fail("\n".join(bad))
    used = set().union(*(metric_names(e) for _, e in queries))
    print(f"{len(queries)} queries use {len(used)} metrics, all exported or added this round")


def check_alerts(_args):
    d = os.path.join(DEPLOY, "prometheus")
    for cmd in (["promtool", "check", "rules", "alerts.yaml"], ["promtool", "test", "rules", "alerts_test.yaml"]):
        r = run(cmd, cwd=d)
        print(r.stdout + r.stderr)
        if r.returncode != 0:
            fail(" ".join(cmd))


def check_systemd(args):
    unit = os.path.join(DEPLOY, "systemd", "push-cache.service")
    with open(unit) as f:
        text = f.read()
    if "/usr/local/bin/push-cache " not in text:
        fail("ExecStart no longer runs /usr/local/bin/push-cache")
    with tempfile.TemporaryDirectory() as d:
        # verify insists that ExecStart's binary exists: point it at a real one.
        copy = os.path.join(d, "push-cache.service")
        with open(copy, "w") as f:
            f.write(text.replace("/usr/local/bin/push-cache ", os.path.abspath(args.binary) + " "))
        r = run(["systemd-analyze", "verify", copy])
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 or out:
            fail(f"systemd-analyze verify: {out}")
        r = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", copy])
        m = re.search(r"Overall exposure level for push-cache.service: ([0-9.]+)", r.stdout)
        if not m:
            fail(f"no exposure level in: {r.stdout[-500:]} {r.stderr}")
        if float(m.group(1)) > MAX_EXPOSURE:
            fail(f"exposure {m.group(1)} above {MAX_EXPOSURE}:\n{r.stdout}")
        print(f"verify clean, exposure {m.group(1)}")
    for key in ("LimitMEMLOCK=infinity", "User=push-cache", "KillSignal=SIGTERM", "CPUAffinity=",
                "MemoryDenyWriteExecute=yes", "TimeoutStopSec=", "Restart=on-failure"):
        if key not in text:
            fail(f"the unit lost {key}")
    allowed = re.search(r"^SystemCallFilter=@system-service(.*)$", text, re.M)
    if not allowed or not all(s in allowed.group(1) for s in ("io_uring_setup", "io_uring_enter", "io_uring_register")):
        fail("SystemCallFilter must keep the io_uring syscalls")


def load_manifests():
    d = os.path.join(DEPLOY, "kubernetes")
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".yaml"))
    docs = {}
    for path in files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    docs[doc["kind"]] = doc
    return files, docs


def check_kubernetes(_args):
    files, docs = load_manifests()
    r = run(["kubernetes-validate", "--strict", *files])
    print(r.stdout + r.stderr)
    if r.returncode != 0:
        fail("kubernetes-validate")
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"):
        if kind not in docs:
            fail(f"no {kind} in deploy/kubernetes")
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    res = c["resources"]
    if res["requests"] != res["limits"]:
        fail(f"guaranteed QoS needs requests equal to limits: {res}")
    if not re.fullmatch(r"[1-9][0-9]*", str(res["limits"]["cpu"])):
        fail(f"whole CPUs only (the static CPU manager pins integer CPUs): {res['limits']['cpu']}")
    probes = (c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"])
    if probes != ("/health/ready", "/health/live"):
        fail(f"probes must be readiness /health/ready and liveness /health/live: {probes}")
    env = {e["name"]: e for e in c["env"]}
    group = env.get("APP_KAFKA__GROUP_ID", {})
    pod_name = env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if "$(POD_NAME)" not in group.get("value", "") or pod_name != "metadata.name":
        fail("APP_KAFKA__GROUP_ID must come from the pod's name (downward API)")
    args = c["args"]
    secrets_dir = args[args.index("--secrets") + 1]
    config_path = args[args.index("--config") + 1]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    if volumes[mounts[secrets_dir]["name"]].get("secret", {}).get("secretName") != docs["Secret"]["metadata"]["name"]:
        fail(f"--secrets {secrets_dir} must be the Secret's mount")
    config_volume = volumes[mounts[config_path]["name"]]
    if config_volume.get("configMap", {}).get("name") != docs["ConfigMap"]["metadata"]["name"]:
        fail(f"--config {config_path} must come from the ConfigMap")
    yaml.safe_load(docs["ConfigMap"]["data"][mounts[config_path]["subPath"]])
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind, selector in (("Service", docs["Service"]["spec"]["selector"]),
                           ("PodDisruptionBudget", docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])):
        if any(labels.get(k) != v for k, v in selector.items()):
            fail(f"the {kind} does not select the Deployment's pods")
    print("manifests valid; guaranteed QoS with whole CPUs; probes, secrets, config and group id as promised")


def check_seccomp(_args):
    with open(os.path.join(DEPLOY, "seccomp", "push-cache.json")) as f:
        profile = json.load(f)
    if profile["defaultAction"] != "SCMP_ACT_ALLOW":
        fail("the profile allows by default and denies privileged groups")
    denied = {n for rule in profile["syscalls"] if rule["action"] != "SCMP_ACT_ALLOW" for n in rule["names"]}
    needed = {"io_uring_setup", "io_uring_enter", "io_uring_register", "mlock", "sched_setaffinity", "membarrier",
              "mmap", "mprotect", "eventfd2", "clone3", "setrlimit", "prlimit64"}
    if denied & needed:
        fail(f"the profile denies what the service needs: {sorted(denied & needed)}")
    for must in ("mount", "bpf", "init_module", "kexec_load", "ptrace", "setuid"):
        if must not in denied:
            fail(f"the profile should deny {must}")
    print(f"seccomp profile denies {len(denied)} syscalls, none the service needs")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("metric-names")
    m.add_argument("metrics_file")
    m.add_argument("--dashboard", default=os.path.join(DEPLOY, "grafana", "push-cache.json"))
    m.add_argument("--alerts", default=os.path.join(DEPLOY, "prometheus", "alerts.yaml"))
    sub.add_parser("alerts")
    s = sub.add_parser("systemd")
    s.add_argument("binary")
    sub.add_parser("kubernetes")
    sub.add_parser("seccomp")
    args = ap.parse_args()
    {"metric-names": check_metric_names, "alerts": check_alerts, "systemd": check_systemd,
     "kubernetes": check_kubernetes, "seccomp": check_seccomp}[args.cmd](args)


if __name__ == "__main__":
    main()
