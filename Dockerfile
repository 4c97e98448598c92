# cachecar: build with the Rust toolchain, run on distroless as non-root.
#   docker build -t cachecar:local .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin cachecar \
    && strip target/release/cachecar

# glibc and libgcc only; no shell, no package manager. UID 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cachecar /usr/local/bin/cachecar
COPY config/cachecar.yaml /etc/cachecar/cachecar.yaml
USER 65532:65532
ENV CACHECAR_LOG_FORMAT=json
# 8080: the proxy. 9090: admin (metrics, health, purge); keep it private.
EXPOSE 8080 9090
# No curl in the image: the binary checks its own admin port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/cachecar", "healthcheck", "--url", "http://127.0.0.1:9090/readyz"]
ENTRYPOINT ["/usr/local/bin/cachecar"]
CMD ["run", "--config", "/etc/cachecar/cachecar.yaml"]
