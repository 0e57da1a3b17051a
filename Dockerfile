# Build stage: the pinned toolchain compiles the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin switchboard

# Runtime stage: a small Debian with CA certificates for wss:// sources. The service runs as the
# unprivileged `switchboard` user; its data dir exists in the image and belongs to it, so a named
# volume mounted there starts out writable (Docker copies the directory's owner into a new volume).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/switchboard --create-home switchboard \
    && mkdir -p /var/lib/switchboard/data \
    && chown -R switchboard:switchboard /var/lib/switchboard
COPY --from=build /src/target/release/switchboard /usr/local/bin/switchboard
USER switchboard
WORKDIR /var/lib/switchboard
ENV SWITCHBOARD_BIND=0.0.0.0:8080 \
    SWITCHBOARD_DATA_DIR=/var/lib/switchboard/data \
    SWITCHBOARD_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=6 CMD ["switchboard", "health"]
ENTRYPOINT ["switchboard"]
CMD ["serve"]
