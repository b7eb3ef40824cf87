# capstan and the HAProxy it drives, in one container: a proxy service for
# Docker Swarm (or any Docker Engine).
#
# Build: scripts/build-image (release build, then this file). By hand:
#   cargo build --release --locked && docker build -t capstan .
#
# The capstan binary is built on the host and copied in, not compiled in a
# builder stage: a stage would need a Rust image (not pullable where there is
# no registry), and the classic builder has no cache mounts, so every build
# would download and compile every crate again. The host must be the base's
# Debian release (bookworm: glibc, libssl3), as the binary links against them.
FROM debian:bookworm-slim

# Where the binary is, inside the build context.
ARG CAPSTAN_BINARY=target/release/capstan
# `capstan --version`'s number, for the label (scripts/build-image sets it).
ARG CAPSTAN_VERSION=unknown

# HAProxy binds 80 and 443 as the unprivileged user through a file
# capability (libcap2-bin is installed only to set it). Docker >= 20.10 also
# lets any user bind them in a container's own network namespace
# (net.ipv4.ip_unprivileged_port_start=0); the capability covers host
# networking and other engines. Dropping every capability (--cap-drop ALL)
# then needs --cap-add NET_BIND_SERVICE, or the kernel refuses to run HAProxy.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        haproxy tini ca-certificates libssl3 libcap2-bin \
 && setcap cap_net_bind_service=+ep /usr/sbin/haproxy \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log

# A fixed uid/gid (not Debian's `haproxy` user, whose id depends on install
# order), so that a volume's ownership holds across image versions.
RUN groupadd --system --gid 10001 capstan \
 && useradd --system --uid 10001 --gid capstan --home-dir /var/lib/capstan \
        --no-create-home --shell /usr/sbin/nologin capstan \
 && install -d -o capstan -g capstan -m 0750 /var/lib/capstan

COPY ${CAPSTAN_BINARY} /usr/local/bin/capstan

# The API listens on every address (it warns while no token protects the
# mutating endpoints); CAPSTAN_STOP_GRACE fits Docker's default 10 s stop
# grace period: keep stop_grace_period a few seconds above it.
ENV CAPSTAN_LOG_FORMAT=json \
    CAPSTAN_LISTEN=0.0.0.0:8080 \
    CAPSTAN_STOP_GRACE=8s \
    CAPSTAN_STATE_DIR=/var/lib/capstan

USER 10001:10001
WORKDIR /var/lib/capstan
EXPOSE 80 443 8080

# Healthy while capstan answers and HAProxy runs; out of sync with git is not
# unhealthy (a new task would not fix git, and would drop traffic).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["capstan", "health"]

# tini forwards SIGTERM to capstan, which stops HAProxy softly (listeners
# close, requests in flight finish within CAPSTAN_STOP_GRACE), then exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "capstan"]
CMD ["serve"]

LABEL org.opencontainers.image.title="capstan" \
      org.opencontainers.image.description="GitOps reconciler for HAProxy on Docker Swarm, with HAProxy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${CAPSTAN_VERSION}" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
