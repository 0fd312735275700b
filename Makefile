# Push Cache — `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
COUNT ?= 1000
BASE_URL ?= http://127.0.0.1:8080

.PHONY: help deps build release test test-unit clippy run stop stack-up stack-status registry \
	populate-customers populate-bills populate-usage populate-tickets populate-help \
	bench bench-compare bench-shards loadtest perf perf-stat latency check fuzz soak memory restart docker compose-redis compose-kafka-zk compose-kafka-kraft clean

help: ## this list
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

deps: ## install build, test and local-stack dependencies (apt, PyPI tansu)
	bash scripts/install-deps.sh

build: ## debug build
	$(CARGO) build

release: ## optimised build (target/release/push-cache)
	$(CARGO) build --release

test: deps ## the whole test suite, as CI runs it
	$(CARGO) build --examples
	$(CARGO) test --lib --bins --tests -- --test-threads=2
	$(CARGO) check --benches

test-unit: ## unit tests only (no broker needed)
	$(CARGO) test --lib

clippy: ## lints
	$(CARGO) clippy --all-targets -- -D warnings

run: ## set up everything, load sample data, run the service in the foreground (Ctrl-C stops all)
	COUNT=$(COUNT) bash scripts/run-local.sh

stop: ## stop a local stack left running
	-pkill -f 'push-cache --config config/local.yaml' || true
	bash scripts/local-stack.sh down

stack-up: ## start only the local stack (tansu, registry, redis)
	bash scripts/local-stack.sh up

stack-status: ## what of the local stack is up
	bash scripts/local-stack.sh status

registry: release ## run the bundled schema registry on :8081 in the foreground
	target/release/push-cache schema-registry --listen 127.0.0.1:8081 --data .stack/registry.json

populate-customers: ## produce COUNT customers to the local stack
	MESSAGE_TYPE=customer COUNT=$(COUNT) bash scripts/populate-local.sh

populate-bills: ## produce COUNT bills
	MESSAGE_TYPE=bill COUNT=$(COUNT) bash scripts/populate-local.sh

populate-usage: ## produce COUNT usage records
	MESSAGE_TYPE=usage COUNT=$(COUNT) bash scripts/populate-local.sh

populate-tickets: ## produce COUNT tickets
	MESSAGE_TYPE=ticket COUNT=$(COUNT) bash scripts/populate-local.sh

populate-help: ## options of the populate tool
	@$(CARGO) run -q --release --example populate_kafka -- --help 2>&1 | tail -n +2 || true

bench: ## criterion benchmarks (BENCH_MAX_ENTRIES caps cache_benchmark sizes)
	$(CARGO) bench

bench-compare: ## push-cache vs nginx vs axum+DashMap (../shared/peers), 100k customers each, servers on CPU 0, wrk on CPU 1
	bash scripts/bench-compare.sh

bench-shards: ## two shards (forwarding) vs two single-shard replicas on the same CPUs and port, wrk beside them
	bash scripts/bench-shards.sh

loadtest: ## wrk load test of a running server at BASE_URL (ROUTE, DURATION, CONNS, SCRIPT)
	BASE_URL=$(BASE_URL) bash scripts/load-test.sh

perf: ## perf record a running server (PID) under wrk load; flame graph in perf/out/ (see perf/README.md)
	BASE_URL=$(BASE_URL) bash perf/record.sh

perf-stat: ## perf stat (task-clock, context switches, ...) of a running server (PID) under wrk load
	BASE_URL=$(BASE_URL) bash perf/stat.sh

check: ## compare what the running service serves at BASE_URL with the topics' last values (push-cache-check)
	$(CARGO) run -q --release --bin push-cache-check -- --config $(or $(CONFIG),config/local.yaml) --url $(BASE_URL)

fuzz: ## every fuzz target for FUZZ_SECONDS (60) each from fuzz/corpus (cargo-fuzz, stable toolchain)
	bash scripts/fuzz.sh

soak: ## SOAK_SECONDS (300) of GET load with concurrent updates and tombstones, then push-cache-check and RSS
	bash scripts/soak.sh

memory: ## resident memory against the raw bytes of COUNT (1000000) replayed customers, on the local stack
	bash scripts/memory.sh

restart: ## cold replay against warm restart from the SIGTERM snapshot: COUNT (1000000) customers on the local stack
	bash scripts/restart.sh

latency: ## produce-to-visible latency: a fresh topic on the local stack and a push-cache of its own
	bash scripts/latency.sh

docker: ## build the container image (needs a Docker engine)
	docker build -t push-cache:latest .

compose-redis: ## Redis only, in Docker
	docker compose up -d redis

compose-kafka-zk: ## Kafka with ZooKeeper, Schema Registry, Redis and Push Cache, in Docker
	docker compose --profile zk up -d

compose-kafka-kraft: ## Kafka in KRaft mode, Schema Registry, Redis and Push Cache, in Docker
	docker compose --profile kraft up -d

clean: ## remove build output and local-stack state
	$(CARGO) clean
	rm -rf .stack
