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
VOLUME ["/var/lib/surfaces/data"]
ENTRYPOINT ["/usr/local/bin/surfaces"]
CMD ["--config", "/etc/surfaces/surfaces.toml"]
