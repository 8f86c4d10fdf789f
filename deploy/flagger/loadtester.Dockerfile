# The Flagger load tester with gapless in it: canary.yaml's `bash` webhooks run their command in
# the load tester's container. Build from the repository's root, and install the load tester's
# chart with this image:
#
#   docker build -f deploy/flagger/loadtester.Dockerfile -t registry.example.test/flagger-loadtester-gapless:0.1.0 .
#   helm upgrade -i flagger-loadtester flagger/loadtester --namespace test \
#     --set image.repository=registry.example.test/flagger-loadtester-gapless --set image.tag=0.1.0
#
# The load tester's image is Alpine (musl libc), so gapless is built on Alpine too.

ARG LOADTESTER_VERSION=0.34.0

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM ghcr.io/fluxcd/flagger-loadtester:${LOADTESTER_VERSION}
COPY --from=build /src/target/release/gapless /usr/local/bin/gapless
