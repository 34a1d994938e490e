#!/bin/sh
# gobgpd's entrypoint in the podroute DaemonSet:
# - refuses to start without --api-hosts: gobgpd would then serve its unauthenticated gRPC API on every address;
# - removes the unix socket a killed gobgpd left behind (OOM, liveness kill, SIGKILL): the emptyDir keeps it
#   across container restarts and gobgpd exits with "bind: address already in use" when it is there.
#   (A gobgpd stopped with SIGTERM removes its socket itself.)
set -eu
hosts=""
previous=""
for arg in "$@"; do
  case "$previous" in --api-hosts) hosts="$arg" ;; esac
  case "$arg" in --api-hosts=*) hosts="${arg#--api-hosts=}" ;; esac
  previous="$arg"
done
if [ -z "$hosts" ]; then
  echo "gobgpd-entrypoint: --api-hosts is required (unix:///path, or a loopback host:port)" >&2
  exit 2
fi
for host in $(echo "$hosts" | tr ',' ' '); do
  case "$host" in
    unix://*)
      socket="${host#unix://}"
      if [ -S "$socket" ]; then
        rm -f "$socket"
        echo "gobgpd-entrypoint: removed stale socket $socket"
      fi
      ;;
  esac
done
exec gobgpd "$@"
