// Unit tests of the dashboard's logic (no browser): range arithmetic, the calls model, a call's event
// reducer, formatting. Run by CTest as web.dashboard_unit (node --test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { add, subtract, count } from '../src/ranges.js';
import { CallsModel } from '../src/calls_model.js';
import { Track } from '../src/views/call.js';
import { jobState } from '../src/timeline.js';
import { fmtInt, fmtDuration, quantile } from '../src/util.js';

test('ranges: a late packet splits a missing range; lost ranges merge', () => {
  let open = add([], 4, 9);
  open = subtract(open, 6, 6);
  assert.deepEqual(open, [{ first: 4, last: 5 }, { first: 7, last: 9 }]);
  assert.equal(count(open), 5);
  assert.deepEqual(subtract(open, 4, 9), []);
  assert.deepEqual(add(add([], 1, 2), 3, 3), [{ first: 1, last: 3 }]);
  assert.deepEqual(add([{ first: 10, last: 12 }], 1, 2), [{ first: 1, last: 2 }, { first: 10, last: 12 }]);
});

const listed = (id, packets, extra = {}) => ({
  id, state: 'IN_PROGRESS', created_at: 100, last_sequence: packets, packets_received: packets, missing_packets: 0,
  missing_ranges: 0, late_packets: 0, lost_packets: 0, duration: packets * 0.02, ai: { status: 'pending' }, ended_at: null,
  ...extra,
});

test('calls model: packets/s from two readings, events change rows in between', () => {
  const m = new CallsModel();
  m.merge([listed('a', 50)], 1000);
  assert.equal(m.calls.get('a').rate, null);
  m.merge([listed('a', 150)], 1002);
  assert.equal(m.calls.get('a').rate, 50);
  const v = m.version;
  assert.ok(m.apply({ kind: 'gap.opened', call_id: 'a', at: 1002.5, data: { first: 151, last: 153 } }));
  assert.ok(m.version > v);
  assert.equal(m.calls.get('a').missing_packets, 3);
  m.apply({ kind: 'gap.filled', call_id: 'a', at: 1002.6, data: { sequence: 152, first: 151, last: 153, closed: false } });
  m.apply({ kind: 'gap.lost', call_id: 'a', at: 1002.7, data: { first: 151, last: 151 } });
  m.apply({ kind: 'packet.late', call_id: 'a', at: 1002.8, data: { sequence: 151 } });
  const a = m.calls.get('a');
  assert.equal(a.missing_packets, 1);
  assert.equal(a.lost_packets, 1);
  assert.equal(a.late_packets, 1);
  assert.equal(m.apply({ kind: 'segment.cut', call_id: 'a', at: 1003, data: { first: 1, last: 1 } }), false);
  assert.deepEqual(m.totals(), { live: 1, rate: 50, withGaps: 1, missing: 1, late: 1, lost: 1 });
});

test('calls model: a settled call keeps its state; an active call gone from the listing is dropped', () => {
  const m = new CallsModel();
  m.merge([listed('a', 10), listed('b', 10)], 1000);
  m.apply({ kind: 'call.state_changed', call_id: 'a', at: 1001, data: { from: 'PROCESSING_AI', to: 'COMPLETED' } });
  // A listing read just before the event still says PROCESSING_AI: the event is newer.
  m.merge([listed('a', 10, { state: 'PROCESSING_AI' })], 1001.5);
  assert.equal(m.calls.get('a').state, 'COMPLETED');
  assert.equal(m.calls.has('b'), false, 'b left the active listing without an event');
  m.apply({ kind: 'call.created', call_id: 'c', at: 1002, data: { reason: 'first packet' } });
  assert.equal(m.calls.get('c').state, 'IN_PROGRESS');
});

test('a call page follows its jobs through retries, death and replay', () => {
  const t = new Track('c', '');
  const job = (kind, data, at = 1) => t.apply({ kind, call_id: 'c', job_id: 7, at, data: { first: 1, last: 4, ...data } });
  assert.equal(job('job.claimed', { attempt: 1, max_attempts: 2 }), 'jobs');
  assert.equal(t.jobs.get(7).state, 'running');
  job('job.failed', { attempt: 1, error: 'AI Service Unavailable', next_run_at: 5 });
  assert.equal(jobState(t.jobs.get(7)), 'retrying');
  assert.equal(t.jobs.get(7).run_at, 5);
  job('job.claimed', { attempt: 2, max_attempts: 2 });
  job('job.failed', { attempt: 2, error: 'AI Service Unavailable', next_run_at: null });
  job('job.dead', { attempts: 2, error: 'failed after 2 attempts' });
  assert.equal(jobState(t.jobs.get(7)), 'dead');
  job('job.replayed', {});
  assert.equal(jobState(t.jobs.get(7)), 'queued');
  job('job.claimed', { attempt: 1, max_attempts: 2 });
  job('job.succeeded', { attempt: 1, latency_ms: 12 });
  assert.equal(t.apply({ kind: 'transcript.final', call_id: 'c', job_id: 7, at: 2, data: { first: 1, last: 4, text: 'hi' } }), 'transcript');
  assert.equal(t.segments.get(7).text, 'hi');
  assert.equal(t.apply({ kind: 'dtmf', call_id: 'c', job_id: null, at: 3, data: { kind: 'dtmf', sequence: 9, data: { digit: '5' } } }), 'call');
  assert.deepEqual(t.dtmf, [{ digit: '5', at: 3, sequence: 9 }]);
});

test('a call page draws what the gap events tell', () => {
  const t = new Track('c', '');
  t.call = { last_sequence: 3, state: 'IN_PROGRESS' };
  const ev = (kind, data) => t.apply({ kind, call_id: 'c', job_id: null, at: 1, data });
  assert.equal(ev('gap.opened', { first: 4, last: 6 }), 'gaps');
  assert.equal(t.last, 7);
  ev('gap.filled', { sequence: 5, first: 4, last: 6, closed: false });
  assert.deepEqual(t.open, [{ first: 4, last: 4 }, { first: 6, last: 6 }]);
  ev('gap.lost', { first: 4, last: 4 });
  ev('packet.late', { sequence: 4 });
  assert.deepEqual(t.open, [{ first: 6, last: 6 }]);
  assert.deepEqual(t.lost, [{ first: 4, last: 4 }]);
  assert.deepEqual(t.late, [{ first: 4, last: 4 }]);
});

test('formatting', () => {
  assert.equal(fmtInt(1234567), '1,234,567');
  assert.equal(fmtInt(999), '999');
  assert.equal(fmtInt(-4321), '-4,321');
  assert.equal(fmtInt(null), '–');
  assert.equal(fmtDuration(75), '1:15');
  assert.equal(fmtDuration(3725), '1:02:05');
  assert.equal(quantile([5, 1, 3, 2, 4], 0.5), 3);
  assert.equal(quantile([], 0.5), null);
});
