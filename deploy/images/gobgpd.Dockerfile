# syntax=docker/dockerfile:1
# gobgpd sidecar image: gobgpd and the gobgp CLI (liveness probe, debugging) from Debian 12's gobgpd package
# (3.10.0, the version whose API protos the agent image carries).
# Build:  docker build -f deploy/images/gobgpd.Dockerfile -t podroute/gobgpd:3.10.0 deploy/images
ARG DEBIAN_IMAGE=debian:12.11-slim

FROM ${DEBIAN_IMAGE} AS gobgp
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gobgpd \
 && gobgpd --version

# Only the two binaries (dynamically linked against glibc only) go into a clean image: no apt state, no docs.
FROM ${DEBIAN_IMAGE}
COPY --from=gobgp /usr/bin/gobgpd /usr/bin/gobgp /usr/bin/
COPY scripts/gobgpd-entrypoint.sh /usr/local/bin/gobgpd-entrypoint
RUN chmod 0755 /usr/local/bin/gobgpd-entrypoint && gobgpd --version
# Root with only NET_BIND_SERVICE (BGP is TCP 179): Kubernetes does not give added capabilities to other uids,
# and the agent (uid 0) must be able to write to the socket gobgpd creates. See deploy/base/daemonset.yaml.
ENTRYPOINT ["/usr/local/bin/gobgpd-entrypoint"]
CMD ["--api-hosts", "unix:///run/podroute/gobgp.sock", "--pprof-disable"]
