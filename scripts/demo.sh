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
exec node --disable-warning=TimeoutNegativeWarning scripts/demo.ts "$@"
