#!/usr/bin/env bash
# Installs what dhtfs needs and builds it. Idempotent; called by `npm start`, `npm test`, `npm run bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi
npx tsc -p tsconfig.json
