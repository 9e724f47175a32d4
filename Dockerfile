# syntax=docker/dockerfile:1
# Gatehouse: a release build in a full Rust image, run from distroless `cc` as uid/gid 65532.
# The runtime stage needs no shell and writes only to /var/lib/gatehouse (a volume), so it runs
# with readOnlyRootFilesystem. Build:  docker build -t gatehouse .

ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them: an empty crate with the real
# manifest and lock file.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src examples \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > examples/echo_upstream.rs \
    && cargo build --release --locked --bin gatehouse \
    && rm -rf src examples
COPY src ./src
COPY migrations ./migrations
COPY examples ./examples
# The dependency layer's placeholder binary must not be mistaken for the real one.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin gatehouse \
    && install -D -m 0755 target/release/gatehouse /out/gatehouse \
    && install -d -m 0755 -o 65532 -g 65532 /out/var/lib/gatehouse

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="An authentication sidecar: verifies JWTs and API keys, enforces routes, injects identity headers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/gatehouse-auth/gatehouse"
COPY --from=build /out/gatehouse /usr/local/bin/gatehouse
COPY --from=build --chown=65532:65532 /out/var/lib/gatehouse /var/lib/gatehouse
COPY docker/gatehouse.toml /etc/gatehouse/gatehouse.toml
# Relative paths in the config (data/, keys/) resolve here: the one writable place.
WORKDIR /var/lib/gatehouse
VOLUME ["/var/lib/gatehouse"]
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/gatehouse.toml"]
