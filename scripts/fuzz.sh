#!/usr/bin/env bash
# Fuzzes one target with libFuzzer for a while (clang, ASan+UBSan; the `fuzz` CMake preset).
#   scripts/fuzz.sh TARGET [SECONDS] [JOBS]   TARGET: packet_json or http_request; SECONDS default 600
#                                            JOBS parallel fuzzing processes, default 1
# Starts from the seed corpus fuzz/corpus/TARGET; inputs that reach new code are kept in
# build/fuzz/corpus/TARGET (copy the interesting ones into fuzz/corpus/TARGET to make them seeds). A crash
# or a broken invariant stops the run and is saved as fuzz/crashes/TARGET-crash-<sha1>; replay it with
#   build/fuzz/fuzz/fuzz_TARGET fuzz/crashes/TARGET-crash-<sha1>
# AIPBX_FUZZ_BUILD_DIR picks another build directory (default build/fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh packet_json|http_request [SECONDS] [JOBS]}
seconds=${2:-600}
jobs=${3:-1}
[ -d "fuzz/corpus/$target" ] || { echo "fuzz.sh: no target $target (see fuzz/corpus/)" >&2; exit 2; }
build=${AIPBX_FUZZ_BUILD_DIR:-build/fuzz}

scripts/install-deps.sh
cmake --preset fuzz -B "$build" >/dev/null
cmake --build "$build" -j2 --target "fuzz_$target"

work="$build/corpus/$target"
mkdir -p "$work" fuzz/crashes
# The HTTP target's seeds include headers over the 16 KiB limit; let the fuzzer grow inputs past it.
max_len=4096
[ "$target" = http_request ] && max_len=24576
args=(-max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048
      -artifact_prefix="fuzz/crashes/$target-" -print_final_stats=1)
[ -f "fuzz/$target.dict" ] && args+=(-dict="fuzz/$target.dict")
if [ "$jobs" -gt 1 ]; then args+=(-fork="$jobs"); fi
exec "$build/fuzz/fuzz_$target" "${args[@]}" "$work" "fuzz/corpus/$target"
