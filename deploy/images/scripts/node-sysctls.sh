#!/bin/sh
# Sets the kernel settings a podroute node needs (the list of src/node/sysctl.ts nodeSysctls()), through the
# host's /proc/sys/net mounted at $PROC_SYS_NET: a container's own /proc/sys is read-only unless privileged.
# br_netfilter must already be loaded by the host (modules-load.d, see deploy/README.md): loading modules takes
# SYS_MODULE, which is as good as host root. Writes only what differs; the agent re-reads them.
#   PROC_SYS_NET   default /host/proc/sys/net
set -eu
net="${PROC_SYS_NET:-/host/proc/sys/net}"

if [ ! -d "$net" ]; then
  echo "node-sysctls: $net is not a directory (mount the host's /proc/sys/net there)" >&2
  exit 1
fi
if [ ! -d "$net/bridge" ]; then
  echo "node-sysctls: br_netfilter is not loaded ($net/bridge is missing); load it on the host:" \
    "echo br_netfilter > /etc/modules-load.d/podroute.conf && modprobe br_netfilter" >&2
  exit 1
fi

# set_sysctl KEY VALUE, KEY relative to net (ipv4/ip_forward = net.ipv4.ip_forward)
set_sysctl() {
  file="$net/$1"
  if [ ! -f "$file" ]; then
    echo "node-sysctls: the kernel has no sysctl net.$(echo "$1" | tr / .) ($file)" >&2
    exit 1
  fi
  current="$(cat "$file")"
  if [ "$current" != "$2" ]; then
    echo "$2" > "$file"
    echo "node-sysctls: net.$(echo "$1" | tr / .) $current -> $2"
  fi
}

set_sysctl ipv4/ip_forward 1
set_sysctl bridge/bridge-nf-call-iptables 1
set_sysctl ipv6/conf/all/forwarding 1
set_sysctl bridge/bridge-nf-call-ip6tables 1
