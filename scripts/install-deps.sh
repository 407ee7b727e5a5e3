#!/usr/bin/env bash
# Installs what aipbx needs to build, run and test on Debian 12: apt packages that are missing, and the
# npm packages of web/ (Swagger UI, the OpenAPI linter, browser-test tooling). Idempotent and quiet when
# everything is there already. Needs root (or sudo) only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # build
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libsqlite3-dev libpq-dev libspdlog-dev libcli11-dev prometheus-cpp-dev
  # the --config file (TOML), TLS and token digests
  libtomlplusplus-dev libssl-dev
  # call audio: G.711 (spandsp), resampling (speexdsp); the pocketsphinx engine, its US English model, and
  # the recordings its tests decode
  libspandsp-dev libspeexdsp-dev libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us pocketsphinx-testdata
  # the voice activity detector that cuts segments at pauses (--segmenter vad): WebRTC's audio processing
  libwebrtc-audio-processing-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  # tests and tools
  sqlite3 curl procps openssl
  # the PostgreSQL store's tests start a throwaway server of their own (scripts/pg-cluster.sh)
  postgresql
  # fuzzing: clang with libFuzzer and the sanitizer runtimes (scripts/fuzz.sh, the fuzz preset)
  clang-14 libclang-rt-14-dev
  # a real WebSocket client for the stream tests over TLS (Debian's python3-websockets, under /usr/bin/python3)
  python3-websockets
  # static analysis in CI (scripts/tidy.sh)
  clang-tidy-14
  # the browser test of /docs (driven by playwright-core from web/)
  chromium
  # benchmarks: wrk, and the seed's Python stack to compare against
  wrk python3 python3-fastapi python3-uvicorn python3-sqlalchemy python3-aiosqlite
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from Debian (nodejs + npm) or from a vendor package that bundles npm.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  echo "install-deps: npm ci in web/" >&2
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
