#!/usr/bin/env bash
# Installs the Debian packages spotmatch's tests and local cluster run: PostgreSQL (server
# binaries; tests start private instances), etcd, Redis, npm (for buf), and gcc with the
# Python headers (mypyc compiles the hot path, decision 0021). Idempotent:
# installs only what is missing. Not root: prints the exact command instead.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || missing+=(python3-dev)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "spotmatch needs: ${missing[*]}. Run as root: apt-get update && $cmd" >&2
    exit 1
fi
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
$cmd >/dev/null
# Debian starts the services it installs; spotmatch runs its own private instances.
for svc in etcd redis-server; do
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done
