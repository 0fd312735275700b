# syntax=docker/dockerfile:1
# Multi-stage build: cargo-chef caches the dependency build in its own layer,
# the runtime image is Debian slim with the binary, running as a non-root user.
#
# glommio drives io_uring. At run time the container needs:
#   - locked memory: --ulimit memlock=-1:-1 (at least 512 KiB + 512 KiB per shard)
#   - io_uring syscalls, which Docker's default seccomp profile blocks since
#     Docker 25: --security-opt seccomp=unconfined (or a profile allowing
#     io_uring_setup, io_uring_enter and io_uring_register)
# docker-compose.yml sets both.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=planner /src/recipe.json recipe.json
COPY vendor vendor
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --bin push-cache

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pushcache
COPY --from=builder /src/target/release/push-cache /usr/local/bin/push-cache
COPY config /etc/push-cache
USER pushcache
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=2s --retries=3 CMD curl -sf http://127.0.0.1:8080/health/live || exit 1
ENTRYPOINT ["push-cache"]
CMD ["--config", "/etc/push-cache/docker.yaml", "--secrets", "/run/secrets"]
