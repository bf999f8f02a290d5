#!/usr/bin/env bash
# The Debian packages that the tests and the demo use beyond Node (which comes from npm): a C
# and a C++ compiler for the crashing programs, flock for the core_pattern lock, curl for the
# stack's readiness checks, Maven and a JDK for the Kafka and Elasticsearch jars, elfutils'
# eu-stack for the analyzer's unwinding, the debuginfod server its tests serve separate debug info
# from and the client library elfutils loads to ask one (libdebuginfod1, dlopened by libdw, so
# checked by its file), gdb for `podmortem debug`, Python 3 with venv for the schema fuzzer's
# virtual environment (test/support/schemathesis.ts; checked by ensurepip, which Debian's python3
# lacks without python3-venv), nginx as the TLS proxy with authentication that the secured
# connections' tests put in front of Elasticsearch (test/support/nginx.ts; bench/api.ts uses it
# too). Installed with apt-get when a command or the library is missing (needs root); a machine
# that has them all is left alone. Prometheus is installed by deploy/local/prometheus.sh.
set -euo pipefail

# command → Debian package
declare -A packages=([gcc]=gcc [g++]=g++ [flock]=util-linux [curl]=curl [mvn]=maven [java]=openjdk-17-jdk-headless [eu-stack]=elfutils [debuginfod]=debuginfod [gdb]=gdb [nginx]=nginx-light)

missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null || missing+=("${packages[$cmd]}")
done
compgen -G '/usr/lib/*/libdebuginfod.so.1' >/dev/null || missing+=(libdebuginfod1)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "debian-deps: missing ${missing[*]}; installing them needs root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "debian-deps: installing ${missing[*]} (apt-get)…"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
