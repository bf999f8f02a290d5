#!/usr/bin/env bash
# The demo from a fresh clone: installs the npm packages (Node 24 among them) when needed, then
# runs scripts/demo.ts with Node 24. Arguments pass through (--keep, --summary-json FILE, --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
fi
bash scripts/debian-deps.sh
export PATH="$PWD/node_modules/.bin:$PATH"
# npm ci applies patches/ (the postinstall); this also patches a node_modules installed before a
# patch was added. It changes nothing when all are applied, and stops on a mismatch.
node scripts/patch-deps.ts >/dev/null
exec node scripts/demo.ts "$@"
