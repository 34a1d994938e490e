#!/bin/sh
# Installs the CNI plugins podroute's network configuration uses into the node's CNI bin dir, those that are
# missing only: a plugin the node already has (from its OS image or another installer) is left alone.
# Each copy is renamed into place, so the container runtime never executes a half-written binary.
#   install-cni-plugins.sh [DEST]   DEST default /opt/cni/bin
#   CNI_PLUGINS_SOURCE              where the image keeps them (default /usr/lib/cni, Debian's package)
#   CNI_PLUGINS                     which ones (default: bridge host-local portmap loopback)
set -eu
dest="${1:-/opt/cni/bin}"
source_dir="${CNI_PLUGINS_SOURCE:-/usr/lib/cni}"
# bridge, host-local, portmap: the plugins of podroute's conflist (src/node/cni.ts); loopback: the runtime's.
plugins="${CNI_PLUGINS:-bridge host-local portmap loopback}"

mkdir -p "$dest"
for plugin in $plugins; do
  if [ -x "$dest/$plugin" ]; then
    echo "install-cni-plugins: $dest/$plugin present, kept"
    continue
  fi
  if [ ! -x "$source_dir/$plugin" ]; then
    echo "install-cni-plugins: $source_dir/$plugin is missing from the image" >&2
    exit 1
  fi
  temp="$dest/.$plugin.podroute-install.$$"
  cp "$source_dir/$plugin" "$temp"
  chmod 0755 "$temp"
  mv -f "$temp" "$dest/$plugin"
  echo "install-cni-plugins: installed $dest/$plugin"
done
