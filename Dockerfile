# syntax=docker/dockerfile:1
#
# provgate container image: a static-ish release build on a distroless, non-root base.
#
# Build (BuildKit, the default builder since Docker 23; it keeps the binary's file capability
# when copying between stages, the legacy builder drops it):
#   docker build -t provgate:dev .
#
# Run (config and certificates from the host; the paths in config.yaml are relative to it, so
# `chain: certs/sipura.pem` is /etc/provgate/certs/sipura.pem):
#   docker run -d --name provgate \
#     -v "$PWD/config.yaml:/etc/provgate/config.yaml:ro" \
#     -v "$PWD/certs:/etc/provgate/certs:ro" \
#     -p 443:443 -p 8443:8443 -p 127.0.0.1:9900:9900 \
#     --cap-drop ALL --cap-add NET_BIND_SERVICE --read-only \
#     provgate:dev
#   docker run --rm -v "$PWD:/etc/provgate:ro" provgate:dev check --config /etc/provgate/config.yaml
#
# The process runs as UID 65532 and binds ports below 1024 through the file capability
# cap_net_bind_service=+ep on /usr/local/bin/provgate. Because the capability is marked
# effective, the kernel refuses to start the binary when NET_BIND_SERVICE is not in the
# container's capability bounding set: with `--cap-drop ALL`, add `--cap-add NET_BIND_SERVICE`.
#
# The HEALTHCHECK expects the admin listener on port 9900 reachable at 127.0.0.1 inside the
# container (admin.listen "0.0.0.0:9900" or "127.0.0.1:9900"). For another admin address, run
# with --health-cmd or --no-healthcheck.

# ---------------------------------------------------------------- builder
FROM rust:1-bookworm AS builder

# cmake: pingora's zlib-ng (libz-ng-sys). perl + make: the vendored OpenSSL 3.x build
# (openssl-src; no libssl-dev: the system OpenSSL is never used). libcap2-bin: setcap.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        cmake perl make libcap2-bin \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Cache mounts keep the registry and the build directory between builds; the binary is copied
# out of the cached target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/provgate /out/usr/local/bin/provgate \
    && setcap cap_net_bind_service=+ep /out/usr/local/bin/provgate \
    && getcap /out/usr/local/bin/provgate \
    && mkdir -p /out/etc/provgate/certs

# ---------------------------------------------------------------- runtime
# glibc, libgcc_s and CA roots; no shell, no package manager, no compiler. OpenSSL is linked
# statically into the binary (vendored), so the base image's libraries do not matter for TLS.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /out/etc/provgate /etc/provgate
COPY --from=builder /out/usr/local/bin/provgate /usr/local/bin/provgate

# nonroot in distroless; numeric so runtimes can check runAsNonRoot without /etc/passwd.
USER 65532:65532

# 443 / 8443: the listeners of the example configs; 9900: admin (/healthz, /readyz, /metrics).
EXPOSE 443 8443 9900

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/provgate", "probe", "http://127.0.0.1:9900/healthz"]

# SIGTERM drains: in-flight requests get limits.shutdown_grace (30s by default). Give
# `docker stop` more than that: docker stop -t 45.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/provgate"]
CMD ["run", "--config", "/etc/provgate/config.yaml"]
