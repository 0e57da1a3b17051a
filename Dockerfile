# Build stage: the pinned toolchain compiles the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin switchboard

# Runtime stage: a small Debian with CA certificates for wss:// sources.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/switchboard --create-home switchboard
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
USER switchboard
WORKDIR /var/lib/switchboard
ENV SWITCHBOARD_BIND=0.0.0.0:8080 \
    SWITCHBOARD_DATA_DIR=/var/lib/switchboard/data \
    SWITCHBOARD_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["switchboard"]
CMD ["serve"]
