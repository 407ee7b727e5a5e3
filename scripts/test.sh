#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with CTest.
#   scripts/test.sh            the release preset
#   scripts/test.sh asan-ubsan another preset: debug, release, asan-ubsan, tsan
#   scripts/test.sh ci         what CI runs (.ci/run): the presets of ci_presets below, in turn, and
#                              clang-tidy (scripts/tidy.sh) after the release build
# Under the sanitizer presets the `soak` and `web` labels are left out: the soak test measures a steady
# load for minutes (slowed 5-15x it tests the sanitizer, not aipbx) and the web tests check the OpenAPI
# document and /docs page with npm tools and a browser, which no sanitizer instruments. Every other test,
# the fuzz corpus replay included, runs under each sanitizer; any report fails the test.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
# CI runs the whole suite three times: the release build (what `aipbx serve` runs; benchmarks built too),
# then under AddressSanitizer+UndefinedBehaviorSanitizer and under ThreadSanitizer. A sanitizer report
# fails the test whose process made it, the aipbx servers the integration tests start included.
ci_presets=(release asan-ubsan tsan)
if [ "$preset" = ci ]; then
  for p in "${ci_presets[@]}"; do
    echo "test.sh: preset $p" >&2
    "$0" "$p"
    if [ "$p" = release ]; then
      echo "test.sh: clang-tidy" >&2
      scripts/tidy.sh build/release
    fi
  done
  exit 0
fi
scripts/install-deps.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j2
run=()
exclude=()
case "$preset" in
  asan-ubsan)
    exclude=(-LE 'soak|web')
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_init_order=1:detect_stack_use_after_return=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    ;;
  tsan)
    exclude=(-LE 'soak|web')
    # halt_on_error: a race aborts the process that has it, so a race in the server under an integration
    # test fails that test too, not only in the unit tests' own processes.
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
    # TSan's shadow memory needs the address-space layout it expects; kernels with high mmap ASLR entropy
    # (vm.mmap_rnd_bits > 28) break it, so run without ASLR where setarch may (not in every container).
    if setarch "$(uname -m)" -R true 2>/dev/null; then run=(setarch "$(uname -m)" -R); fi
    ;;
esac
"${run[@]}" ctest --preset "$preset" -j2 --timeout 600 "${exclude[@]}"
