#!/bin/bash
# run_speech_bench.sh: CPU per second of call audio of `aipbx serve --engine pocketsphinx`, against the
# recognizer alone on the same samples, its word error rate, and the live calls per box that follow.
#
#   bench/run_speech_bench.sh [--calls 2] [--seconds 60] [--workers 2] [--segment-packets 250] [--wait 600]
#                             [--config 'NAME|AIPBX_FLAGS|POCKETSPHINX_FLAGS']... [BUILD_DIR]
#
# For each configuration (default: pocketsphinx's defaults, and the --pocketsphinx-maxhmmpf caps), in one
# run:
#   bare   aipbx_bare_decode decodes one call's audio (the looped speech aipbx_speech_load sends: goforward,
#          the cards set and the librivox set of pocketsphinx-testdata, 8 kHz mu-law) cut into the same
#          segments, with pocketsphinx's C API alone, on --workers threads as aipbx decodes (two decoders
#          at once cost each other CPU time on a 2-core VM): CPU time of decoding, resampling and
#          recognition over the audio's duration. Run before and after aipbx, and averaged, so that both
#          see the same machine. Both ways of feeding it: the whole segment as one utterance (what aipbx
#          does) and 20 ms chunks (a live recognizer's way; once).
#   aipbx  aipbx serve (fresh SQLite file, --engine pocketsphinx, --workers decoders, the configuration's
#          flags) takes --calls live calls of that speech for --seconds (aipbx_speech_load), ends them and
#          transcribes them; the script reads aipbx's CPU time (/proc/PID/stat: ingest, storage and
#          recognition together) from its readiness to the last transcript.
#   wer    aipbx_bare_decode decodes each recording of the three sets whole, as aipbx does (its transcript
#          is aipbx's: tests/integration/speech_test.cpp), and scores it against the references.
# Then, once, aipbx with the mock engine answering at once under the same calls: ingest, storage and the
# job queue without recognition.
#
# Prints one line per measurement and a table: CPU s per audio s of each, aipbx over bare (all of it, and
# less the mock run: recognition alone), the live calls per box that aipbx's figure allows (cores / CPU s
# per audio s), the word error rate, the wall-clock lag of the transcripts, and the 1-minute load average
# before and after. CPU time, not wall time: other load on a shared machine changes it much less.
#
# Builds nothing: BUILD_DIR (default build/release) must hold src/app/aipbx, bench/aipbx_speech_load and
# bench/aipbx_bare_decode. Loopback only; every process it starts is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/aipbx_bench.sh
source "$here/lib/aipbx_bench.sh"

calls=2
seconds=60
workers=2
segment_packets=250
wait_s=600
configs=()
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --segment-packets) segment_packets="$2"; shift 2 ;;
    --wait) wait_s="$2"; shift 2 ;;
    --config) configs+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) positional+=("$1"); shift ;;
  esac
done
if [ ${#configs[@]} -eq 0 ]; then
  configs=(
    "default||"
    "maxhmmpf 10000|--pocketsphinx-maxhmmpf 10000|-maxhmmpf 10000"
    "maxhmmpf 3000|--pocketsphinx-maxhmmpf 3000|-maxhmmpf 3000"
  )
fi
build="${positional[0]:-$root/build/release}"
aipbx_bin="$build/src/app/aipbx"
load_bin="$build/bench/aipbx_speech_load"
bare_bin="$build/bench/aipbx_bare_decode"
need_built "$aipbx_bin" "$load_bin" "$bare_bin"
make_work_dir aipbx-speech-bench

cores=$(nproc)
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# aipbx serve with the given flags under the live calls; prints its CPU per audio second and the load's
# figures. Runs in a command substitution, where `set -e` does not hold.
run_aipbx() {
  rm -f "$work"/aipbx.db*
  start_aipbx "$work/aipbx.log" "$aipbx_bin" serve --db "$work/aipbx.db" --workers "$workers" \
    --segment-packets "$segment_packets" --idle-timeout 0 --log-level warning "$@" || exit 1
  local c0 c1 l0 line
  c0=$(cpu_seconds_of "$AIPBX_PID")
  l0=$(load1)
  line=$(timeout $((seconds + wait_s + 60)) "$load_bin" --port "$AIPBX_PORT" --calls "$calls" --seconds "$seconds" \
    --wait "$wait_s" || true)
  c1=$(cpu_seconds_of "$AIPBX_PID")
  stop_aipbx
  python3 -c "import sys; c=$c1-$c0; a=$calls*$seconds; print(f'cpu_s={c:.1f} cpu_per_audio_s={c/a:.4f}', end=' ')"
  echo "$line load1=$l0->$(load1)"
}

echo "aipbx: $aipbx_bin"
echo "cores: $cores, workers (decoders): $workers, segments: $segment_packets packets, $calls calls of ${seconds} s"
echo "start: $(date -u +%FT%TZ), load $(load1), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo ?)"

mock=$(run_aipbx --engine mock --mock-delay-ms 0:0 --mock-failure-rate 0)
echo "[mock engine] aipbx: $mock"

rows=()
for cfg in "${configs[@]}"; do
  IFS='|' read -r name aipbx_flags sphinx_flags <<<"$cfg"
  l0=$(load1)
  # shellcheck disable=SC2086
  bare=$("$bare_bin" --seconds "$seconds" --segment-packets "$segment_packets" --threads "$workers" -- $sphinx_flags)
  # shellcheck disable=SC2086
  chunks=$("$bare_bin" --seconds "$seconds" --segment-packets "$segment_packets" --threads "$workers" \
    --chunk-ms 20 -- $sphinx_flags)
  # shellcheck disable=SC2086
  served=$(run_aipbx --engine pocketsphinx $aipbx_flags)
  # shellcheck disable=SC2086
  bare_after=$("$bare_bin" --seconds "$seconds" --segment-packets "$segment_packets" --threads "$workers" -- \
    $sphinx_flags)
  # shellcheck disable=SC2086
  wer=$("$bare_bin" --audio corpus -- $sphinx_flags)
  echo "[$name] bare: $bare"
  echo "[$name] bare, after aipbx: $bare_after"
  echo "[$name] bare, 20 ms chunks: $chunks"
  echo "[$name] aipbx: $served"
  echo "[$name] corpus: $wer"
  rows+=("$(python3 - "$name" "$bare" "$bare_after" "$chunks" "$served" "$mock" "$wer" "$cores" "$l0" "$(load1)" <<'PY'
import re, sys
name, bare, after, chunks, served, mock, wer, cores, l0, l1 = sys.argv[1:]
f = lambda line, key: float(re.search(rf'\b{key}=([-0-9.e]+)', line).group(1))
b0, b1, c = f(bare, 'cpu_per_audio_s'), f(after, 'cpu_per_audio_s'), f(chunks, 'cpu_per_audio_s')
a, m = f(served, 'cpu_per_audio_s'), f(mock, 'cpu_per_audio_s')
b = (b0 + b1) / 2
print(f"| {name} | {b0:.3f} / {b1:.3f} | {c:.3f} | {a:.3f} | {a - m:.3f} | {100 * (a / b - 1):+.0f} % / "
      f"{100 * ((a - m) / b - 1):+.0f} % | {int(cores) / a:.1f} | {f(wer, 'wer'):.3f} | "
      f"{f(served, 'lag_p50'):.1f} / {f(served, 'lag_max'):.1f} s | {l0} → {l1} |")
PY
)")
done

echo
echo "| configuration | bare, whole segments (before / after) | bare, 20 ms chunks | aipbx | aipbx less ingest | aipbx over bare (all / less ingest) | live calls per $cores cores | WER | lag p50 / max | load |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"
echo "(CPU s per audio s; mock engine, ingest and queue alone: $(field cpu_per_audio_s "$mock"))"
