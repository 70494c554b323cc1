#!/usr/bin/env bash
# Installs the tools the benchmark needs from Debian, if any is missing: nginx-light and
# libnginx-mod-stream (the CDN origin and its per-connection throttle),
# aria2 and curl (the peers), time (GNU time, for CPU and peak RSS) and jq (parses the tree listing in the
# hfd-style aria2c pipeline).
# Idempotent: when everything is present it does nothing (no apt-get update).
# Runs as root, or through sudo when available.
set -euo pipefail

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
# The stream module: per-connection throttling (proxy_download_rate) in front of the static server.
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v aria2c >/dev/null 2>&1 || need+=(aria2)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/bin/time ] || need+=(time)
command -v jq >/dev/null 2>&1 || need+=(jq)

if [ "${#need[@]}" -eq 0 ]; then
  echo "bench/setup.sh: all tools present" >&2
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "bench/setup.sh: need root (or sudo) to install: ${need[*]}" >&2
    exit 1
  fi
fi

echo "bench/setup.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >&2

# Debian's postinst starts the system nginx on :80; the benchmark runs its own. Stop the
# system one only if it was this script that just installed it (and systemd is not around).
if [[ " ${need[*]} " == *" nginx-light "* ]]; then
  if [ -f /run/nginx.pid ] && ! pidof systemd >/dev/null 2>&1; then
    "${sudo_cmd[@]}" nginx -s quit 2>/dev/null || true
  fi
fi
echo "bench/setup.sh: done" >&2
