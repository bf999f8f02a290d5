#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the npm packages (Node 24 among them), runs the
# static checks, brings up the real local stack, runs every tap test, and stops the servers it
# started (a stack that was already running is left running).
#   npm test                 everything
#   npm test -- FILE...      only these test files (the stack still comes up)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
fi
export PATH="$PWD/node_modules/.bin:$PATH"
# An install made before a patch was added gets it now (idempotent; see scripts/patch-deps.ts).
node scripts/patch-deps.ts >/dev/null
step "node $(node --version)"

step "static checks: tsc, eslint, prettier, generated files"
tsc -p tsconfig.json
eslint --max-warnings 0 .
prettier --check . >/dev/null || { prettier --check .; exit 1; }

step "Debian packages, the local stack"
bash scripts/debian-deps.sh
started=()
for c in kafka elasticsearch prometheus seaweedfs; do
  bash deploy/local/stack.sh status "$c" >/dev/null 2>&1 || started+=("$c")
done
stop_started() {
  if [ ${#started[@]} -gt 0 ]; then
    step "stopping the servers this run started: ${started[*]}"
    bash deploy/local/stack.sh down "${started[@]}"
  fi
}
trap stop_started EXIT
bash deploy/local/stack.sh up

step "kustomize (test/k8s-manifests.test.ts renders deploy/k8s with it)"
node test/support/kustomize.ts
node test/support/helm.ts

step "tests"
# tap compiles its test class from the plugins in .taprc (ts-node off: Node strips the types);
# a fresh node_modules holds the default build until this runs.
tap build >/dev/null
tap "$@"
