# syntax=docker/dockerfile:1
# podroute agent image: Debian 13 (trixie) with Debian's nodejs (v20.19: bookworm's 18 is older than the agent's
# engines), the tools the agent drives (iproute2, iptables, ipset), the Debian CNI plugins the
# install-cni-plugins init container copies to the node, and the compiled agent with its production node_modules.
# The same image as `make images` builds without a registry (deploy/images/build.sh, mmdebstrap): the final
# stage's packages are deploy/images/packages-agent.txt, and the paths, user and entrypoint are the script's; the
# base is the Debian point release that build last used (its manifest's debian.version).
# test/unit/deploy/images.test.ts checks that the two agree. The node image only builds (tsc, npm ci).
# Build from the repository root:  docker build -f deploy/images/agent.Dockerfile -t podroute/agent:0.1.0 .
ARG NODE_IMAGE=node:20.20.2-bookworm-slim
ARG AGENT_BASE_IMAGE=debian:13.8-slim
ARG DEBIAN_IMAGE=debian:12.15-slim

# GoBGP's API protos of the gobgpd the sidecar image installs (same Debian release, same 3.10.0).
FROM ${DEBIAN_IMAGE} AS protos
RUN apt-get update -q \
 && cd /tmp && apt-get download -q golang-github-osrg-gobgp-dev \
 && dpkg-deb -x golang-github-osrg-gobgp-dev_*.deb /tmp/gobgp \
 && mkdir /protos \
 && cp /tmp/gobgp/usr/share/gocode/src/github.com/osrg/gobgp/api/gobgp.proto \
       /tmp/gobgp/usr/share/gocode/src/github.com/osrg/gobgp/api/attribute.proto \
       /tmp/gobgp/usr/share/gocode/src/github.com/osrg/gobgp/api/capability.proto /protos/

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# Type errors fail the build (tsc exits non-zero).
RUN npx tsc -p tsconfig.json --outDir dist

FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM ${AGENT_BASE_IMAGE}
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Debian's iptables package ships both backends' binaries (iptables-nft-*, iptables-legacy-*); the agent runs
# them by name, choosing at start the one kube-proxy's rules are in (config iptables.backend: auto, nft, legacy).
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      nodejs iproute2 iptables ipset containernetworking-plugins \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/podroute
COPY package.json ./
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=protos /protos/ ./proto/
COPY deploy/images/scripts/install-cni-plugins.sh deploy/images/scripts/node-sysctls.sh /usr/local/lib/podroute/
RUN chmod 0755 dist/src/cli/main.js /usr/local/lib/podroute/*.sh \
 && ln -s /opt/podroute/dist/src/cli/main.js /usr/local/bin/podroute \
 && podroute --version
# Root: the agent needs NET_ADMIN/NET_RAW, which Kubernetes grants to uid 0 only (see deploy/base/daemonset.yaml).
USER root
ENTRYPOINT ["podroute"]
CMD ["--help"]
