# syntax=docker/dockerfile:1
# One image for every BuyTicket service. Kubernetes runs it as `buyticket serve <service>`
# (deploy/k8s); by default it runs the whole marketplace in one container:
#
#   docker build -t buyticket .
#   docker run --rm -p 3000:3000 -v buyticket-data:/data buyticket      # http://127.0.0.1:3000
#   docker run --rm buyticket serve --help

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directories are cache mounts (fast rebuilds); the binary is copied
# out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p buyticket \
    && install -D -m 0755 target/release/buyticket /out/buyticket

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 buyticket \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin buyticket \
    && install -d -o 10001 -g 10001 -m 0750 /data
COPY --from=build /out/buyticket /usr/local/bin/buyticket
# HOST/PORT: listen on every interface of the container, port 3000, in both modes.
# DATA_DIR: where `up` keeps its SQLite files and development key (a volume in production use).
ENV HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/data
WORKDIR /data
USER 10001:10001
EXPOSE 3000
# The image has no curl: bash asks /healthz itself. (Kubernetes uses its own probes.)
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-3000} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/buyticket"]
CMD ["up"]
