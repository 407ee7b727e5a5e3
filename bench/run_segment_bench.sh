#!/bin/bash
# run_segment_bench.sh: where to cut calls into AI segments, every N packets (--segmenter fixed) or at pauses
# (--segmenter vad): the word error rate of each on the same calls, and what the pause segmenter costs.
#
#   bench/run_segment_bench.sh [--calls 3] [--lead-ms 1300] [--live-calls 20] [--live-seconds 30]
#                              [--rounds 3] [--workers 2] [--wait 900] [--config 'NAME|AIPBX_FLAGS']... [BUILD_DIR]
#
# Accuracy, for each configuration in turn (default: fixed 5 s and 10 s segments, the pause segmenter with
# its defaults and with shorter pauses and segments, and a whole call as one segment for reference):
# `aipbx serve --engine pocketsphinx --workers W` (fresh SQLite file, pocketsphinx's default search) takes
# --calls calls of the speech run_speech_bench.sh streams (pocketsphinx-testdata's goforward, the five cards
# recordings and the five librivox sentences, one after the other: 41 s, 96 words, 8 kHz mu-law in 20 ms
# packets), call k led by k x --lead-ms of silence so that fixed cuts fall elsewhere in each; the packets
# go as fast as aipbx answers (aipbx_speech_load --once). Once every call is COMPLETED, the transcripts are
# scored against the recordings' references: word errors over all calls, the word error rate, the number
# of segments, and aipbx's CPU time per second of audio.
#
# Cost: `aipbx serve --engine mock` (answering at once) under --live-calls live calls of the same speech
# for --live-seconds (one packet per 20 ms per call, over HTTP), once with fixed 5 s segments and once with
# the pause segmenter, --rounds times in alternation (the machine's other load moves CPU time from run to
# run; alternating shares it out): the CPU time of its threads per packet, by what they do: ingest (the
# HTTP threads, the blocking pool, the store's writer, syncer and checkpointer), the pause segmenter
# (aipbx-cutter), the AI workers (aipbx-ai); each run, and the mean of each kind.
#
# Builds nothing: BUILD_DIR (default build/release) must hold src/app/aipbx and bench/aipbx_speech_load.
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/aipbx_bench.sh
source "$here/lib/aipbx_bench.sh"

calls=3
lead_ms=1300
live_calls=20
live_seconds=30
rounds=3
workers=2
wait_s=900
configs=()
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls="$2"; shift 2 ;;
    --lead-ms) lead_ms="$2"; shift 2 ;;
    --live-calls) live_calls="$2"; shift 2 ;;
    --live-seconds) live_seconds="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --wait) wait_s="$2"; shift 2 ;;
    --config) configs+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) positional+=("$1"); shift ;;
  esac
done
if [ ${#configs[@]} -eq 0 ]; then
  configs=(
    "fixed 5 s|--segmenter fixed --segment-packets 250"
    "fixed 10 s|--segmenter fixed --segment-packets 500"
    "vad (defaults: 2 s..10 s, 300 ms pauses)|--segmenter vad"
    "vad 2 s..10 s, 200 ms|--segmenter vad --segment-silence 200ms"
    "vad 3 s..20 s, 400 ms|--segmenter vad --segment-min 3s --segment-max 20s --segment-silence 400ms"
    "vad, detector aggressiveness 3|--segmenter vad --vad-aggressiveness 3"
    "one segment per call|--segmenter fixed --segment-packets 100000"
  )
fi
build="${positional[0]:-$root/build/release}"
aipbx_bin="$build/src/app/aipbx"
load_bin="$build/bench/aipbx_speech_load"
need_built "$aipbx_bin" "$load_bin"
make_work_dir aipbx-segment-bench

# aipbx on a fresh SQLite file, with the flags every run shares and the given ones.
start_run() {
  rm -f "$work"/aipbx.db*
  start_aipbx "$work/aipbx.log" "$aipbx_bin" serve --db "$work/aipbx.db" --workers "$workers" --idle-timeout 0 \
    --log-level warning "$@"
}

# CPU seconds of aipbx's threads so far, by group: "ingest=.. cutter=.. ai=.. total=..".
thread_cpu() {
  python3 - "$AIPBX_PID" <<'PY'
import os, sys
pid, tck = sys.argv[1], os.sysconf('SC_CLK_TCK')
groups = {'ingest': 0, 'cutter': 0, 'ai': 0, 'total': 0}
for tid in os.listdir(f'/proc/{pid}/task'):
    try:
        stat = open(f'/proc/{pid}/task/{tid}/stat').read()
    except OSError:
        continue
    name = stat[stat.index('(') + 1:stat.rindex(')')]
    fields = stat[stat.rindex(')') + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / tck
    group = 'cutter' if name == 'aipbx-cutter' else 'ai' if name == 'aipbx-ai' else 'ingest'
    groups[group] += cpu
    groups['total'] += cpu
print(' '.join(f'{k}={v:.2f}' for k, v in groups.items()))
PY
}

echo "aipbx: $aipbx_bin"
echo "cores: $(nproc), workers: $workers, accuracy: $calls calls of 41 s led by k x $lead_ms ms, cost: $live_calls live calls of $live_seconds s"
echo "start: $(date -u +%FT%TZ), load $(load1), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo ?)"

rows=()
for cfg in "${configs[@]}"; do
  IFS='|' read -r name flags <<<"$cfg"
  l0=$(load1)
  # shellcheck disable=SC2086
  start_run --engine pocketsphinx $flags
  c0=$(thread_cpu)
  line=$(timeout $((wait_s + 120)) "$load_bin" --port "$AIPBX_PORT" --calls "$calls" --once --lead-ms "$lead_ms" \
    --wait "$wait_s" || true)
  c1=$(thread_cpu)
  stop_aipbx
  echo "[$name] $line cpu_before: $c0 cpu_after: $c1"
  rows+=("$(python3 - "$name" "$flags" "$line" "$c0" "$c1" "$l0" "$(load1)" <<'PY'
import re, sys
name, flags, line, c0, c1, l0, l1 = sys.argv[1:]
f = lambda s, k: float(re.search(rf'\b{k}=([-0-9.e]+)', s).group(1))
audio = f(line, 'audio_s')
cpu = f(c1, 'total') - f(c0, 'total')
print(f"| {name} | `{flags}` | {f(line, 'segments'):.0f} | {f(line, 'errors'):.0f} / {f(line, 'words'):.0f} | "
      f"{f(line, 'wer'):.3f} | {cpu / audio:.3f} | {f(line, 'completed'):.0f} of {f(line, 'calls'):.0f} | {l0} → {l1} |")
PY
)")
done

cost_rows=()
cost_configs=()
for _ in $(seq 1 "$rounds"); do
  cost_configs+=("fixed 5 s|--segmenter fixed --segment-packets 250" "vad|--segmenter vad")
done
for cfg in "${cost_configs[@]}"; do
  IFS='|' read -r name flags <<<"$cfg"
  l0=$(load1)
  # shellcheck disable=SC2086
  start_run --engine mock --mock-delay-ms 0:0 --mock-failure-rate 0 $flags
  c0=$(thread_cpu)
  line=$(timeout $((live_seconds + 180)) "$load_bin" --port "$AIPBX_PORT" --calls "$live_calls" --seconds "$live_seconds" \
    --wait 120 || true)
  c1=$(thread_cpu)
  stop_aipbx
  echo "[cost, $name] $line cpu_before: $c0 cpu_after: $c1"
  cost_rows+=("$(python3 - "$name" "$line" "$c0" "$c1" "$live_calls" "$live_seconds" "$l0" "$(load1)" <<'PY'
import re, sys
name, line, c0, c1, calls, seconds, l0, l1 = sys.argv[1:]
f = lambda s, k: float(re.search(rf'\b{k}=([-0-9.e]+)', s).group(1))
packets = int(calls) * float(seconds) * 50
us = lambda k: 1e6 * (f(c1, k) - f(c0, k)) / packets
print(f"| {name} | {us('ingest'):.1f} | {us('cutter'):.1f} | {us('ai'):.1f} | {us('total'):.1f} | "
      f"{f(line, 'segments'):.0f} | {f(line, 'completed'):.0f} | {l0} → {l1} |")
PY
)")
done

echo
echo "| segments cut by | flags | segments | word errors | WER | CPU s per audio s | calls completed | load |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "| $live_calls live calls, mock engine | ingest µs/packet | segmenter µs/packet | AI workers µs/packet | all threads µs/packet | segments | calls completed | load |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
printf '%s\n' "${cost_rows[@]}"
printf '%s\n' "${cost_rows[@]}" | python3 -c '
import sys
rows = {}
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    rows.setdefault(cells[0], []).append([float(c) for c in cells[1:5]])
for name, runs in rows.items():
    mean = [sum(r[i] for r in runs) / len(runs) for i in range(4)]
    print(f"| {name}, mean of {len(runs)} | " + " | ".join(f"{m:.1f}" for m in mean) + " | | | |")
'

