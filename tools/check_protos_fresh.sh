#!/usr/bin/env bash
# Fail (exit 1) if the committed generated code under matching/ differs from what
# tools/gen_protos.sh produces from protos/ now. CI runs this.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

bash tools/gen_protos.sh "$TMP"

if [ ! -d matching ]; then
  echo "check_protos_fresh: matching/ is missing; run tools/gen_protos.sh" >&2
  exit 1
fi
if ! diff -r -u -x __pycache__ -x '*.pyc' "$TMP/matching" matching; then
  echo "check_protos_fresh: generated code is stale; run tools/gen_protos.sh and commit" >&2
  exit 1
fi
echo "check_protos_fresh: matching/ is up to date"
