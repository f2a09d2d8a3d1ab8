#!/usr/bin/env bash
# Installs what dhtfs needs and builds it. Idempotent; called by `npm start`, `npm test`, `npm run bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi
npx tsc -p tsconfig.json
# SPIN model checker for test/model.test.ts (Debian package), and gcc for its verifiers.
if ! command -v spin >/dev/null 2>&1 || ! command -v gcc >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y --no-install-recommends spin gcc libc6-dev >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y --no-install-recommends spin gcc libc6-dev >/dev/null))
  else
    echo "setup: SPIN is missing; install Debian's 'spin' package (the model tests need it)" >&2
  fi
fi
