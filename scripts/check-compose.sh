#!/usr/bin/env bash
# Validates docker-compose.yml: with `docker compose config` when a Compose
# client is installed, and always with a structural check (every service has
# a health check; Push Cache gets its config, memlock and io_uring access).
set -euo pipefail
cd "$(dirname "$0")/.."
if docker compose version >/dev/null 2>&1; then
  for p in zk kraft; do docker compose --profile "$p" config -q; done
  echo "docker compose config: ok"
fi
python3 - <<'PY'
import sys, yaml
d = yaml.safe_load(open("docker-compose.yml"))
s = d["services"]
missing = [n for n, v in s.items() if "healthcheck" not in v]
assert not missing, f"services without a health check: {missing}"
pc = s["push-cache"]
assert any("config/docker.yaml" in v for v in pc["volumes"]), "push-cache must mount its config"
assert pc["ulimits"]["memlock"]["hard"] == -1, "push-cache needs locked memory for io_uring"
assert "seccomp=unconfined" in pc["security_opt"], "push-cache needs the io_uring syscalls"
for profile in ("zk", "kraft"):
    active = [n for n, v in s.items() if profile in v.get("profiles", [profile])]
    assert {"schema-registry", "redis", "push-cache"} <= set(active), (profile, active)
    kafkas = [n for n in active if n.startswith("kafka")]
    assert len(kafkas) == 1 and "kafka" in s[kafkas[0]]["networks"]["default"]["aliases"], (profile, kafkas)
print("docker-compose.yml: structure ok")
PY
