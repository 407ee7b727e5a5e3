// The AI queue over time: counts read from GET /v1/queue (each second while the queue view is open), and
// what the event stream tells of attempts (failures per second, the latency of each success). Samples are
// kept for WINDOW seconds, for the charts.
import { quantile } from './util.js';

const WINDOW = 180;
const LATENCY_WINDOW = 30; // seconds of successes the latency figures are taken over

export class QueueModel {
  constructor() {
    this.counts = null;
    this.samples = { t: [], ready: [], retrying: [], running: [], dead: [], done: [], failed: [], p50: [], p95: [] };
    this.latencies = []; // [at, ms] of job.succeeded events
    this.failures = []; // at of job.failed events
    this.last = null;
  }

  apply(e) {
    if (e.kind === 'job.succeeded') this.latencies.push([e.at, e.data.latency_ms]);
    else if (e.kind === 'job.failed') this.failures.push(e.at);
    else return false;
    return true;
  }

  // A reading of GET /v1/queue at `at` (seconds).
  sample(counts, at) {
    const s = this.samples;
    const prev = this.last;
    this.counts = counts;
    this.last = { at, succeeded: counts.succeeded };
    this.trim(at);
    const throughput = prev && at > prev.at ? Math.max(0, (counts.succeeded - prev.succeeded) / (at - prev.at)) : null;
    const failedRecently = this.failures.filter((t) => t > at - 5).length / 5;
    const recent = this.latencies.filter(([t]) => t > at - LATENCY_WINDOW).map(([, ms]) => ms);
    this.throughput = throughput;
    this.p50 = quantile(recent.slice(), 0.5);
    this.p95 = quantile(recent, 0.95);
    this.latencyCount = recent.length;
    const push = (key, v) => s[key].push(v);
    push('t', at);
    push('ready', counts.ready);
    push('retrying', counts.retrying);
    push('running', counts.running);
    push('dead', counts.dead);
    push('done', throughput);
    push('failed', failedRecently);
    push('p50', this.p50);
    push('p95', this.p95);
    while (s.t.length && s.t[0] < at - WINDOW) for (const key of Object.keys(s)) s[key].shift();
  }

  trim(at) {
    const keep = at - Math.max(LATENCY_WINDOW, 10);
    while (this.latencies.length && this.latencies[0][0] < keep) this.latencies.shift();
    while (this.failures.length && this.failures[0] < keep) this.failures.shift();
  }
}
