#!/bin/bash
# make images: podroute/agent:VERSION and podroute/gobgpd:3.10.0 from Debian packages alone, no registry.
# Each image is a root filesystem made by mmdebstrap (minbase + packages-<image>.txt, apt lists removed, docs and
# man pages left out as in Debian's -slim images), imported into podman once, plus one layer with the image's own
# files and a generated manifest (/usr/share/podroute/image-manifest.json, also written to .build/images/).
# agent.Dockerfile and gobgpd.Dockerfile describe the same images for users with Docker: same packages (read from
# the same lists), entrypoints, user, paths; test/unit/deploy/images.test.ts checks that they do.
# Cached: a root filesystem is remade only when its package list changes, a layer only when its inputs do.
# Usage (from the Makefile, after `make build`): deploy/images/build.sh   Env: DIST (compiled tree, default dist),
# AGENT_TAG (the agent image's tag, default the package version: the upgrade lab test builds an older agent's
# compiled tree as podroute/agent:previous beside the current one; its revision is the commit of DIST's tree).
# Needs root (mmdebstrap and podman as root), the network to a Debian mirror and to npm's registry.
set -euo pipefail

cd "$(dirname "$0")/../.."
readonly OUT=.build/images
readonly DIST=${DIST:-dist}
# runc and no default rlimits, for the commands of this script only (see the file).
export CONTAINERS_CONF=$PWD/deploy/images/containers.conf

# What the images are. The Dockerfiles say the same (checked by the unit test).
readonly IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly AGENT_SUITE=trixie
readonly AGENT_WORKDIR=/opt/podroute
readonly AGENT_USER=root
readonly AGENT_ENTRYPOINT='["podroute"]'
readonly AGENT_CMD='["--help"]'
readonly AGENT_STOPSIGNAL=SIGTERM
readonly GOBGPD_SUITE=bookworm
readonly GOBGPD_VERSION=3.10.0
readonly GOBGPD_WORKDIR=/
readonly GOBGPD_USER=root
readonly GOBGPD_ENTRYPOINT='["/usr/local/bin/gobgpd-entrypoint"]'
readonly GOBGPD_CMD='["--api-hosts", "unix:///run/podroute/gobgp.sock", "--pprof-disable"]'
# The pod deleted (a rolling update, a drain): gobgpd is killed, not asked to stop. On SIGTERM gobgpd 3.10
# deconfigures every peer first: a Cease NOTIFICATION to each (without RFC 8538's N bit the peer then withdraws
# the node's routes at once, no graceful restart) and every learned path withdrawn from its RIB, which the agent
# then deletes from the kernel. Killed, it only closes its sessions: the peers keep the node's routes as stale
# (graceful restart, RFC 4724) and the agent keeps the kernel's, until the new pod's gobgpd has resynced (measured
# in the upgrade lab test: ~340 probes lost per stream with SIGTERM, see deploy/README.md). The kubelet and
# podman stop a container with its image's stop signal.
readonly GOBGPD_STOPSIGNAL=SIGKILL
readonly MANIFEST=/usr/share/podroute/image-manifest.json

log() { printf '%s images: %s\n' "$(date -u +%T)" "$*" >&2; }
short_hash() { sha256sum | cut -c1-16; }
packages() { grep -Ev '^(#|$)' "deploy/images/packages-$1.txt"; }
# Time of the last commit that changed these files (of HEAD when none did yet): SOURCE_DATE_EPOCH.
commit_time() { local t; t=$(git log -1 --format=%ct -- "$@"); echo "${t:-$(git log -1 --format=%ct)}"; }

# The root filesystem of image $1 on Debian suite $2, written to the tarball $3, its files dated $4.
make_rootfs() {
  local image=$1 suite=$2 tar=$3 epoch=$4
  log "$image: mmdebstrap --variant=minbase $suite with $(packages "$image" | paste -sd' ')"
  SOURCE_DATE_EPOCH=$epoch mmdebstrap --quiet --variant=minbase --format=tar --include="$(packages "$image" | paste -sd,)" \
    --aptopt='APT::Install-Recommends "false"' --hook-dir=/usr/share/mmdebstrap/hooks/maybe-merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$suite" "$tar.partial"
  mv "$tar.partial" "$tar"
}

# podroute/$1-base:<hash of what makes it>, imported from its cached root filesystem; prints the name.
base_image() {
  local image=$1 suite=$2
  # Dated by the last commit of the package list: the same list gives the same tarball (for the same mirror).
  local epoch; epoch=$(commit_time "deploy/images/packages-$image.txt")
  local key; key=$({ echo "$suite $epoch"; packages "$image"; declare -f make_rootfs; } | short_hash)
  local name=localhost/podroute/$image-base:$key tar=$OUT/rootfs-$image-$key.tar
  # The image first: a clean clone (CI runs `make test` in one) on a machine that imported this base before needs
  # no tarball, and must not wait for mmdebstrap (2 min or more).
  if podman image exists "$name"; then
    echo "$name"
    return
  fi
  if [ ! -f "$tar" ]; then
    rm -f "$OUT/rootfs-$image-"*
    make_rootfs "$image" "$suite" "$tar" "$epoch" >&2
  fi
  podman import --quiet "$tar" "$name" >/dev/null
  echo "$name"
}

# The agent's production node_modules (npm ci --omit=dev), cached per package-lock.json; prints the directory.
production_node_modules() {
  local dir; dir=$OUT/npm-$(cat package.json package-lock.json | short_hash)
  if [ ! -d "$dir" ]; then
    log "agent: npm ci --omit=dev"
    rm -rf "$OUT"/npm-*
    mkdir -p "$dir.partial"
    cp package.json package-lock.json "$dir.partial/"
    npm ci --omit=dev --no-audit --no-fund --prefix "$dir.partial" >&2
    mv "$dir.partial" "$dir"
  fi
  echo "$dir/node_modules"
}

# The agent's files, placed under $1 where agent.Dockerfile puts them: its production node_modules (in an image
# of their own, agent_modules_image) and the rest (the agent image's own layer).
stage_agent() {
  stage_agent_modules "$1"
  stage_agent_app "$1"
}
stage_agent_modules() {
  mkdir -p "$1$AGENT_WORKDIR"
  cp -a "$NODE_MODULES" "$1$AGENT_WORKDIR/node_modules"
}
stage_agent_app() {
  local root=$1 app=$1$AGENT_WORKDIR
  mkdir -p "$app/dist" "$app/proto" "$root/usr/local/lib/podroute" "$root/usr/local/bin"
  cp package.json "$app/"
  cp -a "$DIST/src" "$app/dist/src"
  cp proto/gobgp.proto proto/attribute.proto proto/capability.proto "$app/proto/"
  install -m 0755 deploy/images/scripts/install-cni-plugins.sh deploy/images/scripts/node-sysctls.sh "$root/usr/local/lib/podroute/"
  chmod 0755 "$app/dist/src/cli/main.js"
  ln -s "$AGENT_WORKDIR/dist/src/cli/main.js" "$root/usr/local/bin/podroute"
}

# The agent's Debian base $1 plus its production node_modules: an image of its own named by the base and the lock
# file, found in podman first (as the base), so that a new commit, or a clean clone on a machine that made it
# before, only adds the compiled agent on top: no npm ci, no 88 MB layer to write. Prints the name.
agent_modules_image() {
  local base=$1
  local key; key=$({ echo "$base"; cat package.json package-lock.json; declare -f stage_agent_modules agent_modules_image; } | short_hash)
  local name=localhost/podroute/agent-modules:$key
  if ! podman image exists "$name"; then
    NODE_MODULES=$(production_node_modules)
    local epoch; epoch=$(commit_time package.json package-lock.json)
    local root=$OUT/layer-agent-modules ctr=podroute-build-agent-modules
    rm -rf "$root" && mkdir -p "$root"
    stage_agent_modules "$root"
    find "$root" -exec touch -h -d "@$epoch" {} +
    log "agent: node_modules layer on $base"
    buildah rm "$ctr" >/dev/null 2>&1 || true
    buildah from --quiet --pull=never --name "$ctr" "$base" >/dev/null
    buildah add --quiet --chown 0:0 "$ctr" "$root" / >/dev/null
    buildah commit --quiet --rm --timestamp "$epoch" "$ctr" "$name" >/dev/null
    rm -rf "$root"
  fi
  echo "$name"
}

# The gobgpd image's own file, placed under $1 where gobgpd.Dockerfile puts it.
stage_gobgpd() {
  install -D -m 0755 deploy/images/scripts/gobgpd-entrypoint.sh "$1/usr/local/bin/gobgpd-entrypoint"
}

# Facts of a base image's root filesystem for the manifest, read from the image itself (its tarball may be gone):
# Debian version, bytes of its files (each hard-linked file once, as the tarball counts it), package<TAB>version
# lines. $1 is the directory `podman image mount` gave.
debian_version() { cat "$1/etc/debian_version"; }
rootfs_bytes() { find "$1" -type f -printf '%i %s\n' | sort -u | awk '{ n += $2 } END { print n }'; }
package_versions() {
  awk '/^Package: / { p = $2 } /^Version: / { v = $2 } /^$/ { print p "\t" v }' "$1/var/lib/dpkg/status" | sort
}

# image-manifest.json from the environment of the call (see build_image).
write_manifest() {
  node -e '
    const e = process.env;
    const packages = e.M_PACKAGES.trim().split("\n").map((l) => { const [name, version] = l.split("\t"); return { name, version }; });
    const m = { image: e.M_IMAGE, tag: e.M_TAG, commit: e.M_COMMIT, sourceDateEpoch: Number(e.M_EPOCH),
      debian: { suite: e.M_SUITE, version: e.M_DEBIAN }, rootfsBytes: Number(e.M_ROOTFS_BYTES),
      layerBytes: Number(e.M_LAYER_BYTES), ...(e.M_IMAGE_BYTES ? { imageBytes: Number(e.M_IMAGE_BYTES) } : {}), packages };
    process.stdout.write(JSON.stringify(m, null, 2) + "\n");'
}

# podroute/$1:$2 on suite $3: base root filesystem + the staged layer, with the configuration of the image.
build_image() {
  local image=$1 tag=$2 suite=$3 workdir=$4 user=$5 entrypoint=$6 cmd=$7 stopsignal=$8
  # docker.io/: what a kubelet (and podman) resolve the DaemonSet's `podroute/agent:0.1.0` to, so that a
  # `podman save` imported into containerd is found; podman would otherwise name it localhost/podroute/...
  local ref=docker.io/podroute/$image:$tag debian_base; debian_base=$(base_image "$image" "$suite")
  # The layer goes on the Debian base, for the agent on the base with its node_modules.
  local base=$debian_base stage=stage_$image
  if [ "$image" = agent ]; then base=$(agent_modules_image "$debian_base"); stage=stage_agent_app; fi
  local epoch; epoch=$(commit_time)
  # The commit of the compiled tree's checkout (an older agent's worktree for AGENT_TAG), else of this one.
  local commit; commit=$(git -C "$DIST" describe --always --dirty 2>/dev/null || git describe --always --dirty)
  local sources=(deploy/images/scripts)
  [ "$image" = agent ] && sources+=("$DIST/src" package.json package-lock.json proto/gobgp.proto proto/attribute.proto proto/capability.proto)
  local key; key=$({ echo "$ref $base $commit $epoch $workdir $user $entrypoint $cmd $stopsignal $IMAGE_PATH"; declare -f "$stage" build_image write_manifest
    find "${sources[@]}" -type f -print0 | sort -z | xargs -0 sha256sum; } | short_hash)
  local stamp=$OUT/$image.stamp
  [ "$tag" = "${DEFAULT_TAG:-}" ] || stamp=$OUT/$image-$tag.stamp
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key $(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null)" ]; then
    log "$ref is up to date"
    return
  fi

  local root=$OUT/layer-$image
  rm -rf "$root" && mkdir -p "$root"
  "$stage" "$root"
  local rootfs; rootfs=$(podman image mount "$debian_base")
  local versions; versions=$(package_versions "$rootfs")
  local debian; debian=$(debian_version "$rootfs")
  local rootfs_size; rootfs_size=$(rootfs_bytes "$rootfs")
  podman image unmount "$debian_base" >/dev/null
  # What the image adds to Debian: its own layer, and for the agent the node_modules under it.
  local added=0
  if [ "$base" != "$debian_base" ]; then
    added=$(du -sb "$(podman image mount "$base")$AGENT_WORKDIR/node_modules" | cut -f1)
    podman image unmount "$base" >/dev/null
  fi
  # Debian's gobgpd must be the version the image is tagged with (and whose protos the agent carries).
  if [ "$image" = gobgpd ] && ! grep -q "^gobgpd	$GOBGPD_VERSION-" <<<"$versions"; then
    echo "Debian's gobgpd in $suite is not $GOBGPD_VERSION" >&2
    exit 1
  fi
  unset M_IMAGE_BYTES # known once committed: only in the manifest next to the build output
  export M_IMAGE=podroute/$image M_TAG=$tag M_COMMIT=$commit M_EPOCH=$epoch M_SUITE=$suite M_PACKAGES=$versions
  export M_DEBIAN=$debian M_ROOTFS_BYTES=$rootfs_size
  export M_LAYER_BYTES; M_LAYER_BYTES=$(($(du -sb "$root" | cut -f1) + added))
  mkdir -p "$root$(dirname "$MANIFEST")"
  write_manifest >"$root$MANIFEST"
  # The commit's time on every file: the same inputs give the same layer digest.
  find "$root" -exec touch -h -d "@$epoch" {} +

  log "$ref: layer on $base"
  local previous; previous=$(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
  local ctr=podroute-build-$image
  buildah rm "$ctr" >/dev/null 2>&1 || true
  buildah from --quiet --pull=never --name "$ctr" "$base" >/dev/null
  buildah add --quiet --chown 0:0 "$ctr" "$root" / >/dev/null
  buildah config --workingdir "$workdir" --user "$user" --entrypoint "$entrypoint" --cmd "$cmd" --stop-signal "$stopsignal" --env "PATH=$IMAGE_PATH" \
    --label "org.opencontainers.image.title=podroute/$image" --label "org.opencontainers.image.version=$tag" \
    --label "org.opencontainers.image.revision=$commit" "$ctr"
  buildah commit --quiet --rm --timestamp "$epoch" "$ctr" "$ref" >/dev/null

  # What this script made before and no longer uses: the image replaced, the node_modules images of older lock
  # files and the bases of older package lists (after the images on them).
  local id; id=$(podman image inspect --format '{{.Id}}' "$ref")
  [ -z "$previous" ] || [ "$previous" = "$id" ] || podman rmi "$previous" >/dev/null 2>&1 || true
  podman images --format '{{.Repository}}:{{.Tag}}' "localhost/podroute/$image-modules" | grep -vxF "$base" |
    xargs -r podman rmi >/dev/null 2>&1 || true
  podman images --format '{{.Repository}}:{{.Tag}}' "localhost/podroute/$image-base" | grep -vxF "$debian_base" |
    xargs -r podman rmi >/dev/null 2>&1 || true
  export M_IMAGE_BYTES; M_IMAGE_BYTES=$(podman image inspect --format '{{.Size}}' "$ref")
  local manifest=$OUT/podroute-$image.manifest.json
  [ "$tag" = "${DEFAULT_TAG:-}" ] || manifest=$OUT/podroute-$image-$tag.manifest.json
  write_manifest >"$manifest"
  echo "$key $id" >"$stamp"
  log "$ref: $((M_IMAGE_BYTES / 1000000)) MB, manifest $manifest"
  REBUILT=yes
}

# The images answer as the Dockerfiles' build checks do (podroute --version, gobgpd --version).
check_images() {
  local version=$1 tag=$2 out
  out=$(podman run --rm --network none "podroute/agent:$tag" --version)
  [ "$out" = "$version" ] || { echo "podroute/agent:$tag --version printed '$out'" >&2; exit 1; }
  out=$(podman run --rm --network none --entrypoint gobgpd "podroute/gobgpd:$GOBGPD_VERSION" --version)
  [[ "$out" == *" $GOBGPD_VERSION"* ]] || { echo "podroute/gobgpd:$GOBGPD_VERSION: gobgpd --version printed '$out'" >&2; exit 1; }
}

main() {
  # `build.sh stage agent|gobgpd DIR`: only the files of the image's layer, into DIR (the unit test compares them
  # with the Dockerfile's; the agent's node_modules from $NODE_MODULES).
  if [ "${1:-}" = stage ] && [[ "${2:-}" =~ ^(agent|gobgpd)$ ]] && [ -d "${3:-}" ]; then
    "stage_$2" "$3"
    return
  fi
  mkdir -p "$OUT"
  [ -f "$DIST/src/cli/main.js" ] || { echo "no $DIST/src/cli/main.js: run make build first" >&2; exit 1; }
  local version; version=$(node -p 'require("./package.json").version')
  local agent_tag=${AGENT_TAG:-$version}
  REBUILT=no
  DEFAULT_TAG=$GOBGPD_VERSION build_image gobgpd "$GOBGPD_VERSION" "$GOBGPD_SUITE" "$GOBGPD_WORKDIR" "$GOBGPD_USER" "$GOBGPD_ENTRYPOINT" "$GOBGPD_CMD" "$GOBGPD_STOPSIGNAL"
  DEFAULT_TAG=$version build_image agent "$agent_tag" "$AGENT_SUITE" "$AGENT_WORKDIR" "$AGENT_USER" "$AGENT_ENTRYPOINT" "$AGENT_CMD" "$AGENT_STOPSIGNAL"
  if [ "$REBUILT" = yes ]; then check_images "$version" "$agent_tag"; fi
}

main "$@"
