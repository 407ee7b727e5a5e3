// LiveStream against a scripted EventSource: events pass through with their ids; a `resume` notice (the
// server cut the page as a slow subscriber) closes the stream, opens it again from now (no Last-Event-ID,
// no `after`) and asks the page to read its state again; a refused stream is retried.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveStream } from '../src/live.js';

class FakeSource {
  static CLOSED = 2;
  static opened = [];
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.listeners = {};
    FakeSource.opened.push(this);
  }
  addEventListener(name, fn) { this.listeners[name] = fn; }
  close() { this.readyState = FakeSource.CLOSED; this.closed = true; }
  message(id, event) { this.onmessage({ lastEventId: String(id), data: JSON.stringify(event) }); }
}
globalThis.EventSource = FakeSource;

const api = { eventsUrl: (params) => `/v1/events?${new URLSearchParams({ ...params, token: 't' })}` };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('events pass through; a resume notice reopens from now and resyncs once', async () => {
  FakeSource.opened = [];
  const seen = [];
  const statuses = [];
  let resyncs = 0;
  const s = new LiveStream(api, { kind: 'call.created' }, {
    onEvent: (e) => seen.push(e.id), onResync: () => resyncs++, onStatus: (t) => statuses.push(t),
  });
  s.open();
  const first = FakeSource.opened[0];
  assert.equal(first.url, '/v1/events?kind=call.created&token=t');
  first.onopen();
  first.message(41, { id: 41, kind: 'call.created' });
  first.message(42, { id: 42, kind: 'call.created' });
  assert.deepEqual(seen, [41, 42]);
  assert.equal(s.lastId, 42);
  first.listeners.resume({ data: '{"after":42,"reason":"slow_subscriber"}' });
  assert.ok(first.closed);
  assert.equal(statuses.at(-1), 'resyncing');
  await sleep(150);
  assert.equal(FakeSource.opened.length, 2);
  assert.equal(FakeSource.opened[1].url, first.url, 'from now: no after, no id carried over');
  assert.equal(resyncs, 1);
  s.close();
});

test('a stream refused outright is retried, and close stops it', async () => {
  FakeSource.opened = [];
  const s = new LiveStream(api, {}, { onEvent: () => {} });
  s.open();
  const first = FakeSource.opened[0];
  first.readyState = FakeSource.CLOSED;
  first.onerror();
  s.close();
  await sleep(50);
  assert.equal(FakeSource.opened.length, 1, 'closed: no retry');
});
