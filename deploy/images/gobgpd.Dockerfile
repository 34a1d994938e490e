# syntax=docker/dockerfile:1
# gobgpd sidecar image: Debian 12 (bookworm) with Debian's gobgpd package: gobgpd 3.10.0, the version whose API
# protos the agent image carries, and the gobgp CLI (liveness probe, debugging).
# The same image as `make images` builds without a registry (deploy/images/build.sh, mmdebstrap): the packages
# are deploy/images/packages-gobgpd.txt, and the paths, user and entrypoint are the script's; the base is the
# Debian point release that build last used (its manifest's debian.version). test/unit/deploy/images.test.ts
# checks that the two agree.
# Build:  docker build -f deploy/images/gobgpd.Dockerfile -t podroute/gobgpd:3.10.0 deploy/images
ARG DEBIAN_IMAGE=debian:12.15-slim

FROM ${DEBIAN_IMAGE}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      gobgpd \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/gobgpd-entrypoint.sh /usr/local/bin/gobgpd-entrypoint
RUN chmod 0755 /usr/local/bin/gobgpd-entrypoint && gobgpd --version
WORKDIR /
# Root with only NET_BIND_SERVICE (BGP is TCP 179): Kubernetes does not give added capabilities to other uids,
# and the agent (uid 0) must be able to write to the socket gobgpd creates. See deploy/base/daemonset.yaml.
USER root
ENTRYPOINT ["/usr/local/bin/gobgpd-entrypoint"]
CMD ["--api-hosts", "unix:///run/podroute/gobgp.sock", "--pprof-disable"]
# Killed, not asked to stop, when the pod is deleted: a SIGTERMed gobgpd sends its peers a Cease and they withdraw
# the node's routes; killed, they keep them under graceful restart (see GOBGPD_STOPSIGNAL in build.sh).
STOPSIGNAL SIGKILL
