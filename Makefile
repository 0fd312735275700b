# Push Cache — `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help deps build release test test-unit clippy run-server registry bench-compare clean

help: ## this list
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

deps: ## install build and test dependencies (apt, tansu broker)
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

run-server: release ## run the service with config/local.yaml (expects the local stack)
	CAPTURE_LOG=$${CAPTURE_LOG:-info} target/release/push-cache --config config/local.yaml

registry: release ## run the bundled schema registry on :8081
	target/release/push-cache schema-registry --listen 127.0.0.1:8081 --data .stack/registry.json

clean: ## remove build output
	$(CARGO) clean
