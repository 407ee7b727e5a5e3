#!/usr/bin/env bash
# clang-tidy over the sources of src/: the checks of .clang-tidy and Clang's thread-safety analysis
# (-Wthread-safety: the GUARDED_BY / REQUIRES annotations of src/domain/thread_annotations.hpp), with the
# compile commands of the release build. Any finding fails. `scripts/test.sh ci` runs it after the release
# suite; alone:
#   scripts/tidy.sh [BUILD_DIR]    (default build/release; configured with the release preset if needed)
# It takes about 4.5 minutes of CPU (clang-tidy parses each file as a compiler would): some 2.5 minutes
# on two free cores.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
scripts/install-deps.sh
[ -f "$build/compile_commands.json" ] || cmake --preset release >/dev/null

# Left out: src/boost_src (Boost's own sources, compiled separately: nothing of aipbx's in them), and
# pocketsphinx_engine.cpp, which builds an aggregate with parentheses (C++20's P0960), a form Clang 14
# cannot parse (Clang 16 can).
mapfile -t files < <(python3 - "$build/compile_commands.json" "$PWD/src/" <<'EOF'
import json, sys
commands, src = sys.argv[1], sys.argv[2]
skip = ("/boost_src/", "/pocketsphinx_engine.cpp")
files = sorted({c["file"] for c in json.load(open(commands))})
for f in files:
    if f.startswith(src) and not any(s in f for s in skip):
        print(f)
EOF
)
# run-clang-tidy takes regular expressions: match each file exactly.
patterns=()
for f in "${files[@]}"; do patterns+=("^$(printf '%s' "$f" | sed 's/[.[\*^$()+?{|]/\\&/g')\$"); done
echo "tidy.sh: clang-tidy-14 over ${#files[@]} files of src/" >&2
run-clang-tidy-14 -p "$build" -j "$(nproc)" -quiet -extra-arg=-Wthread-safety "${patterns[@]}" >"$build/tidy.log" 2>&1 ||
  {
    sed 's/\x1b\[[0-9;]*m//g' "$build/tidy.log" | grep -E -A3 'error:|warning:' >&2 || cat "$build/tidy.log" >&2
    echo "tidy.sh: findings above (whole output in $build/tidy.log)" >&2
    exit 1
  }
echo "tidy.sh: no findings" >&2
