#!/usr/bin/env bash
# Lint protos/ with buf (STANDARD rules, see buf.yaml). Exits non-zero on any finding.
# Uses `buf` from PATH if present, else installs the pinned npm package @bufbuild/buf into
# .tools/npm (gitignored) and runs it from there.
set -euo pipefail

BUF_VERSION="1.75.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if command -v buf >/dev/null 2>&1; then
  BUF="$(command -v buf)"
else
  PREFIX="$ROOT/.tools/npm"
  BUF="$PREFIX/bin/buf"
  if [ ! -x "$BUF" ] || [ "$("$BUF" --version 2>/dev/null || true)" != "$BUF_VERSION" ]; then
    command -v npm >/dev/null 2>&1 || {
      echo "buf_lint: neither buf nor npm is on PATH (apt-get install npm)" >&2
      exit 2
    }
    echo "buf_lint: installing @bufbuild/buf@$BUF_VERSION into $PREFIX" >&2
    npm install --global --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
      "@bufbuild/buf@$BUF_VERSION" >&2
  fi
fi

echo "buf_lint: $("$BUF" --version) lint" >&2
"$BUF" lint
echo "buf_lint: ok" >&2
