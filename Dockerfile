# Multi-stage build of the surfaces binary; runs as an unprivileged user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin surfaces

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/surfaces --create-home surfaces
COPY --from=build /src/target/release/surfaces /usr/local/bin/surfaces
COPY config/surfaces.example.toml /etc/surfaces/surfaces.example.toml
USER surfaces
WORKDIR /var/lib/surfaces
ENV SURFACES__DATA_DIR=/var/lib/surfaces/data
# The ops endpoint (health, metrics, status) listens on all of the container's interfaces:
# 0.0.0.0 is needed for a port mapping to reach it. Publish that port only on the host's
# loopback (`-p 127.0.0.1:9797:9797`, as the compose files do) or on an internal network,
# never on a public interface, and set ops.token (SURFACES__OPS__TOKEN) so /status and
# /metrics need `Authorization: Bearer <token>`; /livez and /readyz (the HEALTHCHECK) stay
# open. Requests must name a Host that is loopback or in ops.allowed_hosts.
ENV SURFACES__OPS__BIND=0.0.0.0:9797
EXPOSE 9797
VOLUME ["/var/lib/surfaces/data"]
# Healthy = /readyz answers 200 (store open, start-up done, sync recent, agents connected).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/surfaces", "--config", "/etc/surfaces/surfaces.toml", "health-check"]
ENTRYPOINT ["/usr/local/bin/surfaces"]
CMD ["--config", "/etc/surfaces/surfaces.toml"]
