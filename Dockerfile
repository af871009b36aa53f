# syntax=docker/dockerfile:1
#
# gdpr-intake container image.
#
#   docker build -t gdpr-intake:0.1.0 .
#   docker run --rm -p 50051:50051 gdpr-intake:0.1.0            # serve (dev keys, SQLite)
#   docker run --rm -e DATABASE_URL=postgres://... gdpr-intake:0.1.0 migrate
#
# The build needs no protoc: build.rs compiles proto/ with protox.

############################################################ build stage
FROM rust:1-bookworm AS builder

WORKDIR /src
# sqlx compile-time checks never reach a database in an image build.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

# 1. Dependency layer: build every dependency against stub targets, so this
#    layer is reused until a Cargo.toml, Cargo.lock, build.rs or proto/
#    change. The stub crate's own artifacts are then deleted, so the real
#    sources are always rebuilt below, whatever their timestamps. The load
#    generator is a member of the workspace, so its manifest and a stub
#    target must be there for cargo to load it, but `-p gdpr-intake` never
#    builds it or what only it depends on. .cargo/config.toml carries the
#    bundled SQLite's compile options, so it comes with the manifests.
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo ./.cargo
COPY tools/loadgen/Cargo.toml ./tools/loadgen/
COPY proto ./proto
RUN mkdir -p src tools/loadgen/src \
 && echo 'fn main() {}' > src/main.rs \
 && : > src/lib.rs \
 && echo 'fn main() {}' > tools/loadgen/src/main.rs \
 && cargo build --release --locked -p gdpr-intake \
 && rm -rf src tools/loadgen/src \
           target/release/gdpr-intake \
           target/release/deps/gdpr_intake-* \
           target/release/deps/libgdpr_intake-* \
           target/release/.fingerprint/gdpr-intake-* \
           target/release/build/gdpr-intake-*

# 2. The crate itself; /out holds what the runtime stage takes, including
#    an empty data dir that gets the runtime user as owner.
COPY . .
RUN cargo build --release --locked -p gdpr-intake \
 && install -D -m 0755 target/release/gdpr-intake /out/usr/local/bin/gdpr-intake \
 && install -d -m 0750 /out/var/lib/gdpr-intake

########################################################## runtime stage
# glibc, libgcc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="gdpr-intake" \
      org.opencontainers.image.description="gRPC intake, routing and deadline tracking for GDPR data-subject requests" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/usr/local/bin/gdpr-intake /usr/local/bin/gdpr-intake
COPY --from=builder --chown=65532:65532 /out/var/lib/gdpr-intake /var/lib/gdpr-intake

# Listen on every interface inside the container; keep state in the data dir.
ENV GDPR_INTAKE_LISTEN=0.0.0.0:50051 \
    GDPR_INTAKE_DATA_DIR=/var/lib/gdpr-intake

# Numeric uid:gid of distroless "nonroot", so Kubernetes can verify
# runAsNonRoot without a passwd lookup.
USER 65532:65532
WORKDIR /var/lib/gdpr-intake
EXPOSE 50051

ENTRYPOINT ["/usr/local/bin/gdpr-intake"]
CMD ["serve"]
