# The gapless image: the binary, kubectl (for a scenario's kubectl steps) and gapless-shard (the
# wrapper deploy/kubernetes/job.yaml runs). Build from the repository's root, with any builder
# (no BuildKit-only feature is used):
#
#   docker build -t registry.example.test/gapless:0.1.0 .
#   docker build --build-arg KUBECTL_VERSION=v1.34.1 -t ... .   # kubectl within one minor
#                                                                # version of your cluster
#
# The build command is the one .ci/run runs (tests/it/deploy.rs checks that they stay the same).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

# kubectl, the official binary, checked against its published SHA-256.
FROM debian:bookworm-slim AS kubectl
ARG KUBECTL_VERSION=v1.34.1
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /tmp/kubectl
RUN arch="$(dpkg --print-architecture)" \
 && base="https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${arch}" \
 && curl -fsSLO "${base}/kubectl" \
 && curl -fsSLO "${base}/kubectl.sha256" \
 && echo "$(cat kubectl.sha256)  kubectl" | sha256sum --check --strict \
 && install -m 0755 kubectl /usr/local/bin/kubectl

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 gapless \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin gapless
COPY --from=kubectl /usr/local/bin/kubectl /usr/local/bin/kubectl
COPY --from=build /src/target/release/gapless /usr/local/bin/gapless
# Executable in the repository (COPY keeps the mode).
COPY deploy/kubernetes/shard.sh /usr/local/bin/gapless-shard
# Numeric, so that the kubelet can check runAsNonRoot against it; job.yaml runs as the same uid.
USER 10001:10001
ENV HOME=/tmp
ENTRYPOINT ["gapless"]
CMD ["--help"]
