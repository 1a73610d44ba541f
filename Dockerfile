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
# The ops endpoint (health, metrics, status) on the container's own interface; publish it
# only on a private network (it has no authentication).
ENV SURFACES__OPS__BIND=0.0.0.0:9797
EXPOSE 9797
VOLUME ["/var/lib/surfaces/data"]
# Healthy = /readyz answers 200 (store open, start-up done, sync recent, agents connected).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/surfaces", "--config", "/etc/surfaces/surfaces.toml", "health-check"]
ENTRYPOINT ["/usr/local/bin/surfaces"]
CMD ["--config", "/etc/surfaces/surfaces.toml"]
