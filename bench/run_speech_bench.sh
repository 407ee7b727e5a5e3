#!/bin/bash
# run_speech_bench.sh: real-time factor and live-call capacity of `aipbx serve --engine pocketsphinx`.
#
#   bench/run_speech_bench.sh [--calls "1 2 4 8"] [--seconds 30] [--workers 2] [--segment-packets 250]
#                             [--wait 120] [AIPBX_BINARY [SPEECH_LOAD_BINARY]]
#
# For each number of calls K in --calls: start aipbx on 127.0.0.1 (a free port) with a fresh SQLite file,
# --engine pocketsphinx, --workers decoders and --segment-packets per AI job; run aipbx_speech_load, which
# streams K live calls of real speech (pocketsphinx-testdata, 8 kHz mu-law, 50 packets/s each) for
# --seconds, ends them and reads their transcripts; stop aipbx. Prints one line per K: the engine's
# real-time factor per segment (processing time / audio duration) and the transcript lag (how long after a
# segment's last packet its text was stored). K calls are transcribed live when the lag stays near one
# segment's duration plus its processing time; a growing lag (p50 far above that) means the box falls behind.
# It also reads aipbx's CPU time (/proc/PID/stat) over the run: CPU seconds per second of call audio
# (ingest, storage and recognition together), and the live calls that allows on every core of the machine
# (cores / that), a figure other load on a shared machine does not change.
#
# Builds nothing: pass the binaries (default build/release/src/app/aipbx and
# build/release/bench/aipbx_speech_load). Loopback only; every process it starts is stopped on exit, and
# each run ends by itself after --seconds + --wait.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

calls_list="1 2 4 8"
seconds=30
workers=2
segment_packets=250
wait_s=120
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) calls_list="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --segment-packets) segment_packets="$2"; shift 2 ;;
    --wait) wait_s="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) positional+=("$1"); shift ;;
  esac
done
aipbx_bin="${positional[0]:-$root/build/release/src/app/aipbx}"
load_bin="${positional[1]:-$root/build/release/bench/aipbx_speech_load}"
for b in "$aipbx_bin" "$load_bin"; do
  [ -x "$b" ] || { echo "missing $b (build it first)" >&2; exit 2; }
done

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "aipbx: $aipbx_bin"
echo "cores: $(nproc), workers (decoders): $workers, segment: $segment_packets packets ($((segment_packets / 50)) s), calls of ${seconds} s"
for k in $calls_list; do
  rm -f "$work"/aipbx.db*
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$aipbx_bin" serve --host 127.0.0.1 --port "$port" --db "$work/aipbx.db" --engine pocketsphinx --workers "$workers" \
    --segment-packets "$segment_packets" --idle-timeout 0 --log-level warning >"$work/aipbx.log" 2>&1 &
  pid=$!
  ready=""
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && { ready=1; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$ready" ] || { echo "aipbx did not start:" >&2; cat "$work/aipbx.log" >&2; exit 1; }
  cpu_start=$(cpu_ticks "$pid")
  load_start=$(cut -d' ' -f1 /proc/loadavg)
  line=$(timeout $((seconds + wait_s + 60)) "$load_bin" --port "$port" --calls "$k" --seconds "$seconds" --wait "$wait_s" || true)
  cpu_end=$(cpu_ticks "$pid")
  # aipbx's own CPU time (ingest, storage and recognition) per second of call audio, and the live calls
  # that many seconds allow on every core of this machine: a figure that other load on the machine
  # does not change, unlike the wall-clock real-time factor and lag.
  python3 - "$line" "$cpu_start" "$cpu_end" "$(getconf CLK_TCK)" "$k" "$seconds" "$(nproc)" "$load_start" \
    "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import sys
line, c0, c1, tck, k, secs, cores, l0, l1 = sys.argv[1:]
cpu = (int(c1) - int(c0)) / int(tck)
audio = int(k) * float(secs)
per = cpu / audio
print(f"{line} cpu_s={cpu:.1f} cpu_per_audio_s={per:.3f} calls_per_{cores}_cores={int(cores) / per:.1f} "
      f"load1={l0}->{l1}")
PY
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  pid=""
done
