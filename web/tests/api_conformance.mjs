// Conformance of the running aipbx server to the OpenAPI document it serves.
//
// Usage: node web/tests/api_conformance.mjs <base-url>
// (tests/web/api_conformance.sh starts aipbx on a free port with a fast, half-failing mock engine and calls this.)
//
// Drives calls through ingest, the AI pipeline and their lifecycle, then checks that:
// - every answer has a documented status and a body valid against the documented schema (a small JSON
//   Schema subset validator below: $ref, type, const, enum, required, properties, additionalProperties: false,
//   items, minimum/maximum, minLength/maxLength, pattern, anyOf/oneOf/allOf), with no undocumented field;
//   every documented GET operation answers, and HEAD gives the same status and headers without a body;
// - the lifecycle holds: IN_PROGRESS -> end -> PROCESSING_AI -> settled (FAILED with a dead job) -> replay
//   -> settled again -> archive -> ARCHIVED, with every change in `transitions`; a second end or archive is
//   409 invalid_transition; an ended call refuses new packets (409 call_ended) but answers repeats as
//   duplicates; archived calls leave the default listing; a call idle for --idle-timeout ends by itself;
// - sequence recovery: /gaps lists open ranges, which become lost once a sequence --reorder-window past them
//   arrives (and all of them at the end), a packet of a lost range is stored as late_after_lost, and the
//   jobs cover each received packet once, in order;
// - the call_id pattern of the document and the server agree (dots alone refused);
// - other methods get 405 with the Allow header the document promises ("GET, HEAD" for a read);
// - the jobs API, the transcript and the call's `ai` object agree with each other and with the documented
//   rules (states, ordering, paging, replay of a dead job, 409 job_not_dead, 404, 422 locations);
// - the statements of the document's text hold: sequence 0 is listed by default, numbers come back in
//   their shortest form, /openapi.json and /docs are sent with Cache-Control: no-cache, a declared
//   Content-Length over the body limit gets 413 body_too_large.
// Exits 0 on success, 1 with a list of failures otherwise.
import net from 'node:net';

const [baseArg] = process.argv.slice(2);
if (!baseArg) {
  console.error('usage: node api_conformance.mjs <base-url>');
  process.exit(2);
}
const base = new URL(baseArg);
const bodyLimit = Number(process.env.AIPBX_BODY_LIMIT || 4096);
// The server's --reorder-window in sequences (its time bound is long enough not to matter here) and its
// --idle-timeout in seconds, as tests/web/api_conformance.sh starts it.
const reorderPackets = Number(process.env.AIPBX_REORDER_PACKETS || 3);
const idleTimeout = Number(process.env.AIPBX_IDLE_TIMEOUT || 3);

const failures = [];
const fail = (msg) => { failures.push(msg); console.error(`FAIL: ${msg}`); };
const check = (ok, msg) => { if (!ok) fail(msg); return ok; };
const step = (msg) => console.log(`- ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ the document and a schema validator
const specResponse = await fetch(new URL('/openapi.json', base));
const spec = await specResponse.json();
const methods = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

function resolve(node) {
  let n = node;
  for (let i = 0; n && n.$ref && i < 20; ++i) {
    n = n.$ref.slice(2).split('/').reduce((o, k) => o?.[k.replace(/~1/g, '/').replace(/~0/g, '~')], spec);
    if (n === undefined) throw new Error(`unresolved $ref ${node.$ref}`);
  }
  return n;
}

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

// Returns a list of problems of `value` against `schema` (empty: valid). With `strict`, an object schema that
// lists `properties` (and says nothing of additionalProperties) accepts no other field: every field the
// server sends must be documented.
function validate(schemaIn, value, where = '$', strict = false) {
  const schema = resolve(schemaIn);
  const errors = [];
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    const t = typeOf(value);
    if (!types.includes(t) && !(t === 'integer' && types.includes('number'))) {
      return [`${where}: ${JSON.stringify(value)} is ${t}, not ${types.join('|')}`];
    }
  }
  if ('const' in schema && value !== schema.const) errors.push(`${where}: ${JSON.stringify(value)} is not ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${where}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${where}: ${value} < ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${where}: ${value} > ${schema.maximum}`);
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${where}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) errors.push(`${where}: longer than ${schema.maxLength}`);
    if (schema.pattern && !new RegExp(schema.pattern, 'u').test(value)) errors.push(`${where}: does not match ${schema.pattern}`);
  }
  if (typeOf(value) === 'object') {
    for (const key of schema.required ?? []) if (!(key in value)) errors.push(`${where}: missing required "${key}"`);
    for (const [key, sub] of Object.entries(schema.properties ?? {})) {
      if (key in value) errors.push(...validate(sub, value[key], `${where}.${key}`, strict));
    }
    const closed = schema.additionalProperties === false ||
                   (strict && schema.properties && schema.additionalProperties === undefined);
    if (closed) {
      for (const key of Object.keys(value)) if (!(key in (schema.properties ?? {}))) errors.push(`${where}: undocumented field "${key}"`);
    }
  }
  if (Array.isArray(value) && schema.items) value.forEach((item, i) => errors.push(...validate(schema.items, item, `${where}[${i}]`, strict)));
  for (const sub of schema.allOf ?? []) errors.push(...validate(sub, value, where, strict));
  if (schema.anyOf && !schema.anyOf.some((s) => validate(s, value, where, strict).length === 0)) errors.push(`${where}: matches no anyOf`);
  if (schema.oneOf && schema.oneOf.filter((s) => validate(s, value, where, strict).length === 0).length !== 1) errors.push(`${where}: does not match exactly one oneOf`);
  return errors;
}

// ------------------------------------------------------------------ HTTP helpers
// Sends a request and checks the answer against the operation `op` of the document (path template +
// method): the status must be documented, a JSON body must validate, documented headers must be present.
// Reads a Server-Sent Events answer until `count` events came (0: just its first bytes), then drops the
// connection. The frames' `data` are parsed as JSON.
async function readSse(target, count, headers = {}) {
  const abort = new AbortController();
  const res = await fetch(new URL(target, base), { headers, signal: abort.signal });
  const frames = [];
  if (res.status !== 200) return { res, frames, text: await res.text() };
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const frame = { event: '', id: undefined, data: '' };
      for (const line of buffered.slice(0, end).split('\n')) {
        const colon = line.indexOf(':');
        if (colon === 0) continue;
        const field = line.slice(0, colon);
        const v = line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') frame.event = v;
        else if (field === 'id') frame.id = Number(v);
        else if (field === 'data') frame.data += v;
      }
      buffered = buffered.slice(end + 2);
      if (frame.data) frames.push({ ...frame, json: JSON.parse(frame.data) });
    }
    if (frames.length >= count) break;
  }
  abort.abort();
  return { res, frames };
}

async function call(method, target, { op, body, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['Content-Type'] ??= 'application/json';
  }
  const res = await fetch(new URL(target, base), init);
  const text = await res.text();
  let json;
  if ((res.headers.get('content-type') ?? '').startsWith('application/json') && text) {
    try { json = JSON.parse(text); } catch { fail(`${method} ${target}: body is not JSON: ${text.slice(0, 200)}`); }
  }
  if (op) {
    const [path, verb] = op;
    const operation = spec.paths[path]?.[verb];
    if (!check(operation, `the document has no ${verb.toUpperCase()} ${path}`)) return { res, text, json };
    const documented = operation.responses[String(res.status)];
    if (check(documented, `${method} ${target}: status ${res.status} is not documented for ${verb.toUpperCase()} ${path}`)) {
      const response = resolve(documented);
      const media = response.content?.['application/json'];
      if (media?.schema && json !== undefined && method !== 'HEAD') {
        const problems = validate(media.schema, json, '$', true);
        check(problems.length === 0, `${method} ${target} ${res.status}: body does not match its schema:\n    ${problems.slice(0, 10).join('\n    ')}`);
      }
      for (const name of Object.keys(response.headers ?? {})) {
        check(res.headers.has(name), `${method} ${target} ${res.status}: documented header ${name} is missing`);
      }
    }
  }
  return { res, text, json };
}

// One raw HTTP/1.1 exchange, for what fetch cannot send (a Content-Length without its body).
function raw(request) {
  return new Promise((resolveRaw, reject) => {
    const socket = net.connect({ host: base.hostname, port: Number(base.port) });
    let data = '';
    let closed = false;
    socket.setTimeout(5000, () => { socket.destroy(); reject(new Error('raw request timed out')); });
    socket.on('data', (chunk) => { data += chunk; });
    socket.on('end', () => { closed = true; });
    socket.on('close', () => resolveRaw({ data, closed }));
    socket.on('error', reject);
    socket.write(request);
  });
}

// ------------------------------------------------------------------ the lifecycle, as the document draws it
const ingestOp = ['/v1/call/stream/{call_id}', 'post'];
const callOp = ['/v1/calls/{call_id}', 'get'];
const listCallsOp = ['/v1/calls', 'get'];
const gapsOp = ['/v1/calls/{call_id}/gaps', 'get'];
const endOp = ['/v1/calls/{call_id}/end', 'post'];
const archiveOp = ['/v1/calls/{call_id}/archive', 'post'];
const jobsOp = ['/v1/jobs', 'get'];
const settledStates = ['COMPLETED', 'FAILED'];
// The changes of state the calls section's diagram allows (from>to), and the reasons CallTransition lists
// (each in backquotes in its description).
const allowedChanges = new Set(['null>IN_PROGRESS', 'IN_PROGRESS>PROCESSING_AI', 'PROCESSING_AI>COMPLETED',
                                'PROCESSING_AI>FAILED', 'FAILED>PROCESSING_AI', 'COMPLETED>ARCHIVED', 'FAILED>ARCHIVED']);
const reasonsText = spec.components?.schemas?.CallTransition?.properties?.reason?.description ?? '';

// Checks a call's `transitions`: a chain from creation to its current state, every change allowed, in time
// order, the first at `created_at` and the last at `state_changed_at`. Returns the list.
function checkTransitions(c, label) {
  const t = c?.transitions;
  if (!check(Array.isArray(t) && t.length > 0, `${label}: no transitions in ${JSON.stringify(c)?.slice(0, 300)}`)) return [];
  check(t[0].from === null && t[0].to === 'IN_PROGRESS' && t[0].reason === 'first packet' && t[0].at === c.created_at,
        `${label}: the first transition is ${JSON.stringify(t[0])}, created_at ${c.created_at}`);
  t.forEach((x, i) => {
    check(allowedChanges.has(`${x.from}>${x.to}`), `${label}: ${x.from} -> ${x.to} is not in the lifecycle`);
    check(reasonsText.includes(`\`${x.reason}\``), `${label}: reason "${x.reason}" is not among those CallTransition documents`);
    if (i > 0) {
      check(x.from === t[i - 1].to, `${label}: transition ${i} starts at ${x.from}, the one before ended at ${t[i - 1].to}`);
      check(x.at >= t[i - 1].at, `${label}: transitions out of time order: ${JSON.stringify(t)}`);
    }
  });
  const last = t.at(-1);
  check(last.to === c.state && last.at === c.state_changed_at,
        `${label}: the last transition ${JSON.stringify(last)} vs state ${c.state} since ${c.state_changed_at}`);
  const ending = t.find((x) => x.from === 'IN_PROGRESS');
  if (ending) check(ending.at === c.ended_at && ending.reason === c.end_reason, `${label}: ended_at/end_reason disagree with ${JSON.stringify(ending)}`);
  else check(c.ended_at === null && c.end_reason === null, `${label}: not ended, yet ended_at ${c.ended_at}, end_reason ${c.end_reason}`);
  return t;
}

// Polls `probe` (returning {done, value, seen}) every `ms` until done; throws after `tries`.
async function waitFor(what, probe, { tries = 200, ms = 100 } = {}) {
  let last;
  for (let i = 0; i < tries; ++i) {
    last = await probe();
    if (last.done) return last.value;
    await sleep(ms);
  }
  throw new Error(`${what} did not happen within ${(tries * ms) / 1000} s: ${JSON.stringify(last?.seen)}`);
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const range = (first, last) => ({ first, last, count: last - first + 1 });
const isConflict = (r, code) => r.res.status === 409 && r.json?.error === code;

try {
  // ---------------------------------------------------------------- static documents
  check(specResponse.headers.get('cache-control') === 'no-cache', `/openapi.json Cache-Control is ${specResponse.headers.get('cache-control')}`);
  const docs = await call('GET', '/docs', { op: ['/docs', 'get'] });
  check(docs.res.headers.get('cache-control') === 'no-cache', `/docs Cache-Control is ${docs.res.headers.get('cache-control')}`);

  // ---------------------------------------------------------------- a call left to idle
  // Its only packet goes first; it must end by itself after --idle-timeout (checked at the very end).
  const idleId = 'conf-idle';
  const idleSent = await call('POST', `/v1/call/stream/${idleId}`, { op: ingestOp, body: { sequence: 1, data: 'idle_1', timestamp: 1700000500 } });
  check(idleSent.res.status === 202, `the idle call's packet: ${idleSent.res.status} ${idleSent.text}`);

  // ---------------------------------------------------------------- ingest one call
  const callId = 'conf-1';
  const stream = `/v1/call/stream/${callId}`;
  const sent = [];
  for (const sequence of [0, 1, 2, 4, 3, 5, 6, 7, 8, 9]) {
    const packet = { sequence, data: `payload_${sequence}`, timestamp: 1700000000.25 + sequence };
    sent.push(packet);
    const r = await call('POST', stream, { op: ingestOp, body: packet });
    check(r.res.status === 202 && r.json?.status === 'stored', `packet ${sequence}: ${r.res.status} ${r.text}`);
  }
  const dup = await call('POST', stream, { op: ingestOp, body: sent[1] });
  check(dup.res.status === 202 && dup.json?.duplicate === true, `a repeated packet: ${dup.res.status} ${dup.text}`);
  const conflict = await call('POST', stream, { op: ingestOp, body: { ...sent[1], data: 'other' } });
  check(isConflict(conflict, 'sequence_conflict'), `a conflicting packet: ${conflict.res.status} ${conflict.text}`);
  const badType = await call('POST', stream, { op: ingestOp, body: 'x', headers: { 'Content-Type': 'text/plain' } });
  check(badType.res.status === 415, `text/plain body: ${badType.res.status}`);
  const bad = await call('POST', '/v1/call/stream/bad%20id', { op: ingestOp, body: { sequence: -1, data: 5 } });
  check(bad.res.status === 422 && bad.json?.detail?.length === 4, `an invalid packet: ${bad.res.status} ${bad.text}`);
  step(`stored ${sent.length} packets of ${callId} (sequence 0 included, 4 before 3)`);

  // ---------------------------------------------------------------- the call before its end
  const before = (await call('GET', `/v1/calls/${callId}`, { op: callOp })).json;
  check(before?.state === 'IN_PROGRESS' && before.transitions?.length === 1, `before the end: ${JSON.stringify(before)}`);
  checkTransitions(before, 'the call in progress');
  check(before?.ai?.next_segment === 9, `before the end, next_segment is ${before?.ai?.next_segment}: sequence 9 should wait for its segment (--segment-packets 2) to fill`);
  const early = await call('POST', `/v1/calls/${callId}/archive`, { op: archiveOp });
  check(isConflict(early, 'invalid_transition'), `archive of a call in progress: ${early.res.status} ${early.text}`);

  // ---------------------------------------------------------------- end
  const ended = await call('POST', `/v1/calls/${callId}/end`, { op: endOp });
  const endCall = ended.json;
  check(ended.res.status === 200 && ['PROCESSING_AI', ...settledStates].includes(endCall?.state), `end: ${ended.res.status} ${ended.text}`);
  check(endCall?.end_reason === 'ended by request' && typeof endCall?.ended_at === 'number', `end: ended_at ${endCall?.ended_at}, end_reason ${endCall?.end_reason}`);
  check(endCall?.ai?.next_segment === 10, `the end did not cut sequence 9 into a last job: next_segment ${endCall?.ai?.next_segment}`);
  const endTransitions = checkTransitions(endCall, 'the end\'s answer');
  check(endTransitions[1]?.from === 'IN_PROGRESS' && endTransitions[1]?.to === 'PROCESSING_AI' && endTransitions[1]?.reason === 'ended by request',
        `the end's transition: ${JSON.stringify(endTransitions[1])}`);
  const endAgain = await call('POST', `/v1/calls/${callId}/end`, { op: endOp });
  check(isConflict(endAgain, 'invalid_transition'), `a second end: ${endAgain.res.status} ${endAgain.text}`);
  const afterEnd = await call('POST', stream, { op: ingestOp, body: { sequence: 10, data: 'payload_10', timestamp: 1700000010.25 } });
  check(isConflict(afterEnd, 'call_ended'), `a new packet after the end: ${afterEnd.res.status} ${afterEnd.text}`);
  const repeatAfterEnd = await call('POST', stream, { op: ingestOp, body: sent[2] });
  check(repeatAfterEnd.res.status === 202 && repeatAfterEnd.json?.duplicate === true, `a repeated packet after the end: ${repeatAfterEnd.res.status} ${repeatAfterEnd.text}`);
  const conflictAfterEnd = await call('POST', stream, { op: ingestOp, body: { ...sent[2], data: 'other' } });
  check(isConflict(conflictAfterEnd, 'call_ended'), `a conflicting packet after the end: ${conflictAfterEnd.res.status} ${conflictAfterEnd.text}`);
  step(`ended ${callId}: 200 ${endCall?.state}; a second end 409, a new packet 409 call_ended, a repeat 202 duplicate`);

  // ---------------------------------------------------------------- open and lost ranges
  // With --reorder-window N (sequences), a range is lost once a sequence N past its end has arrived.
  const gapsId = 'conf-gaps';
  const gapStream = `/v1/call/stream/${gapsId}`;
  const gapSend = async (sequence) => {
    const r = await call('POST', gapStream, { op: ingestOp, body: { sequence, data: `gap_${sequence}`, timestamp: 1700000300 + sequence } });
    check(r.res.status === 202 && r.json?.status === 'stored', `${gapsId} packet ${sequence}: ${r.res.status} ${r.text}`);
    return r.json;
  };
  const gapsOf = async () => (await call('GET', `/v1/calls/${gapsId}/gaps`, { op: gapsOp })).json;
  const callOf = async (id) => (await call('GET', `/v1/calls/${id}`, { op: callOp })).json;
  await gapSend(1);
  await gapSend(2);
  const a5 = await gapSend(5);
  check(a5?.arrival === 'gap' && a5.expected_sequence === 3 && a5.missing_packets === 2, `packet 5 after 2: ${JSON.stringify(a5)}`);
  let g = await gapsOf();
  check(g?.state === 'IN_PROGRESS' && same(g.open, [range(3, 4)]) && same(g.lost, []) && g.missing_packets === 2 &&
        g.lost_packets === 0 && g.expected_sequence === 3 && g.last_sequence === 5, `gaps after 1, 2, 5: ${JSON.stringify(g)}`);
  const a3 = await gapSend(3);
  check(a3?.arrival === 'late' && a3.expected_sequence === 4 && a3.missing_packets === 1, `packet 3, late: ${JSON.stringify(a3)}`);
  const edge = 4 + reorderPackets;  // the first sequence far enough past 4 to give it up
  for (let s = 6; s < edge; ++s) await gapSend(s);
  g = await gapsOf();
  check(same(g?.open, [range(4, 4)]) && same(g?.lost, []), `gaps with the highest sequence ${edge - 1}, inside the window: ${JSON.stringify(g)}`);
  const aEdge = await gapSend(edge);
  check(aEdge?.expected_sequence === edge + 1 && aEdge.missing_packets === 0, `packet ${edge}, which gives 4 up: ${JSON.stringify(aEdge)}`);
  g = await gapsOf();
  check(same(g?.open, []) && same(g?.lost, [range(4, 4)]) && g.lost_packets === 1 && g.missing_packets === 0 && g.expected_sequence === edge + 1,
        `gaps with the highest sequence ${edge}: ${JSON.stringify(g)}`);
  let gc = await callOf(gapsId);
  check(gc?.lost_packets === 1 && gc.lost_ranges === 1 && gc.missing_packets === 0 && gc.missing_ranges === 0 && gc.late_packets === 0,
        `the call with 4 lost: ${JSON.stringify(gc)}`);
  const outOfOrder = gc?.out_of_order_packets;
  const a4 = await gapSend(4);
  check(a4?.arrival === 'late_after_lost' && a4.duplicate === false, `packet 4 after it was given up: ${JSON.stringify(a4)}`);
  gc = await callOf(gapsId);
  check(gc?.late_packets === 1 && gc.lost_packets === 1 && gc.packets_received === edge && gc.out_of_order_packets === outOfOrder,
        `the call after a late packet of a lost range: ${JSON.stringify(gc)}`);
  g = await gapsOf();
  check(same(g?.lost, [range(4, 4)]) && same(g?.open, []), `a late packet changed the lost ranges: ${JSON.stringify(g)}`);
  await gapSend(edge + 3);
  g = await gapsOf();
  check(same(g?.open, [range(edge + 1, edge + 2)]) && g.missing_packets === 2, `gaps after ${edge + 3}: ${JSON.stringify(g)}`);
  const gapsEnd = await call('POST', `/v1/calls/${gapsId}/end`, { op: endOp });
  const ge = gapsEnd.json;
  check(gapsEnd.res.status === 200 && ge?.lost_packets === 3 && ge.lost_ranges === 2 && ge.missing_packets === 0 &&
        ge.expected_sequence === edge + 4 && ge.ai?.next_segment === edge + 4, `the end of ${gapsId}: ${gapsEnd.res.status} ${gapsEnd.text}`);
  g = await gapsOf();
  check(settledStates.concat('PROCESSING_AI').includes(g?.state) && same(g?.open, []) && same(g?.lost, [range(4, 4), range(edge + 1, edge + 2)]) &&
        g.lost_packets === 3 && g.missing_packets === 0, `gaps after the end: ${JSON.stringify(g)}`);
  // Every received packet is in exactly one job's range; ranges are disjoint, ascending, none only lost sequences.
  const received = [...Array.from({ length: edge }, (_, k) => k + 1), edge + 3];
  const gapJobs = ((await call('GET', `/v1/jobs?call_id=${gapsId}&limit=1000`, { op: jobsOp })).json?.jobs ?? [])
    .sort((a, b) => a.first_sequence - b.first_sequence);
  check(gapJobs.every((j, i) => i === 0 || j.first_sequence > gapJobs[i - 1].last_sequence), `overlapping jobs: ${JSON.stringify(gapJobs.map((j) => [j.first_sequence, j.last_sequence]))}`);
  for (const s of received) {
    const n = gapJobs.filter((j) => j.first_sequence <= s && s <= j.last_sequence).length;
    check(n === 1, `received packet ${s} of ${gapsId} is in ${n} jobs`);
  }
  for (const j of gapJobs) check(received.some((s) => j.first_sequence <= s && s <= j.last_sequence), `job ${j.id} covers no received packet`);
  step(`${gapsId}: open [3-4] -> late 3 -> lost [4] at sequence ${edge} -> 4 late_after_lost -> end: lost [4], [${edge + 1}-${edge + 2}]; ${gapJobs.length} jobs`);

  // ---------------------------------------------------------------- wait for the AI pipeline to settle
  // Settled: every job of the ended call is final, and the call is COMPLETED or FAILED. The jobs are read
  // first: the call read after them reflects them (a job and its call's counters change together).
  let settled;
  let lastSeen;
  for (let i = 0; i < 200; ++i) {
    const page = (await call('GET', `/v1/jobs?call_id=${callId}&limit=1000`)).json;
    const c = (await call('GET', `/v1/calls/${callId}`)).json;
    lastSeen = { state: c?.state, ai: c?.ai, jobs: page?.jobs?.map((j) => j.state) };
    const final = page?.jobs?.length > 0 && page.jobs.every((j) => j.state === 'succeeded' || j.state === 'dead');
    if (final && settledStates.includes(c?.state)) { settled = c; break; }
    await sleep(100);
  }
  if (!settled) throw new Error(`the call's AI jobs did not settle within 20 s: ${JSON.stringify(lastSeen)}`);
  step(`settled: ${settled.state}, ai ${JSON.stringify(settled.ai)}`);

  // ---------------------------------------------------------------- jobs, transcript, call: consistent
  const all = (await call('GET', `/v1/jobs?call_id=${callId}&limit=1000`, { op: jobsOp })).json;
  const jobs = all?.jobs ?? [];
  check(all?.next_after === null, `a page holding everything has next_after ${all?.next_after}`);
  check(jobs.every((j, i) => i === 0 || j.id > jobs[i - 1].id), 'jobs are not in id order');
  check(jobs.every((j) => j.call_id === callId), 'call_id filter returned other calls\' jobs');
  const covered = jobs.flatMap((j) => Array.from({ length: j.last_sequence - j.first_sequence + 1 }, (_, k) => j.first_sequence + k));
  check(JSON.stringify(covered.sort((a, b) => a - b)) === JSON.stringify([1, 2, 3, 4, 5, 6, 7, 8, 9]),
        `the jobs' segments cover ${JSON.stringify(covered)}, not 1..9 (sequence 0 is in none)`);
  const byState = (s) => jobs.filter((j) => j.state === s);
  const succeeded = byState('succeeded');
  const dead = byState('dead');
  check(succeeded.length + dead.length === jobs.length, `unsettled jobs: ${JSON.stringify(jobs.map((j) => j.state))}`);
  if (!succeeded.length || !dead.length) {
    throw new Error(`need a succeeded and a dead job, got ${succeeded.length} and ${dead.length}: change --mock-seed`);
  }
  for (const j of dead) {
    check(j.attempts === j.max_attempts && j.last_error && j.finished_at !== null && j.lease_owner === null,
          `dead job ${j.id} does not look dead: ${JSON.stringify(j)}`);
  }
  for (const j of succeeded) check(j.finished_at !== null && j.lease_owner === null, `succeeded job ${j.id}: ${JSON.stringify(j)}`);
  const counts = settled.ai.jobs;
  check(counts.total === jobs.length && counts.outstanding === 0 && counts.succeeded === succeeded.length && counts.dead === dead.length,
        `call ai.jobs ${JSON.stringify(counts)} disagrees with /v1/jobs`);
  check(settled.ai.status === 'failed', `ai.status is ${settled.ai.status} with a dead job`);
  check(settled.state === 'FAILED', `the ended call is ${settled.state} with a dead job`);
  checkTransitions(settled, 'the settled call');
  step(`${jobs.length} jobs: ${succeeded.length} succeeded, ${dead.length} dead`);

  // Paging by the keyset cursor gives the same jobs.
  const paged = [];
  let after = 0;
  for (let i = 0; i < 50; ++i) {
    const page = (await call('GET', `/v1/jobs?call_id=${callId}&limit=2&after=${after}`, { op: jobsOp })).json;
    paged.push(...(page?.jobs ?? []));
    if (page?.next_after == null) break;
    check(page.next_after === page.jobs.at(-1).id, `next_after ${page.next_after} is not the page's last id`);
    after = page.next_after;
  }
  check(JSON.stringify(paged.map((j) => j.id)) === JSON.stringify(jobs.map((j) => j.id)), 'paging with limit=2 gives other jobs');
  const deadPage = (await call('GET', `/v1/jobs?state=dead&call_id=${callId}`, { op: jobsOp })).json;
  check(deadPage?.jobs?.length === dead.length && deadPage.jobs.every((j) => j.state === 'dead'), 'state=dead filter');

  const transcriptOp = ['/v1/calls/{call_id}/transcript', 'get'];
  const transcript = (await call('GET', `/v1/calls/${callId}/transcript`, { op: transcriptOp })).json;
  const segs = transcript?.segments ?? [];
  check(transcript?.ai_status === settled.ai.status, `transcript ai_status ${transcript?.ai_status} vs call ${settled.ai.status}`);
  check(JSON.stringify(segs.map((s) => s.job_id).sort()) === JSON.stringify(succeeded.map((j) => j.id).sort()),
        'the transcript\'s segments are not exactly the succeeded jobs');
  check(segs.every((s, i) => i === 0 || s.first_sequence > segs[i - 1].first_sequence), 'segments are not in sequence order');
  check(transcript?.text === segs.map((s) => s.text).filter((t) => t).join(' '), 'text is not the segments joined by spaces');
  for (const s of segs) {
    const expected = sent.filter((p) => p.sequence >= s.first_sequence && p.sequence <= s.last_sequence)
      .sort((a, b) => a.sequence - b.sequence).map((p) => p.data).join(' ');
    check(s.engine !== 'mock' || s.text === expected, `mock segment ${s.first_sequence}-${s.last_sequence} text "${s.text}", expected "${expected}"`);
  }
  step(`transcript: ${JSON.stringify(transcript?.text)}`);

  // ---------------------------------------------------------------- job errors
  const jobOp = ['/v1/jobs/{job_id}', 'get'];
  const retryOp = ['/v1/jobs/{job_id}/retry', 'post'];
  const missing = await call('GET', '/v1/jobs/987654321', { op: jobOp });
  check(missing.res.status === 404 && missing.json?.error === 'not_found', `unknown job: ${missing.res.status}`);
  const missingRetry = await call('POST', '/v1/jobs/987654321/retry', { op: retryOp });
  check(missingRetry.res.status === 404, `retry of an unknown job: ${missingRetry.res.status}`);
  for (const bad of ['abc', '0', '-1', '1.5', '99999999999999999999']) {
    for (const [m, t, op] of [['GET', `/v1/jobs/${bad}`, jobOp], ['POST', `/v1/jobs/${bad}/retry`, retryOp]]) {
      const r = await call(m, t, { op });
      check(r.res.status === 422 && JSON.stringify(r.json?.detail?.[0]?.loc) === '["path","job_id"]', `${m} ${t}: ${r.res.status} ${r.text}`);
    }
  }
  const badQuery = await call('GET', '/v1/jobs?state=failed&limit=0&after=-1&call_id=a%20b', { op: jobsOp });
  check(badQuery.res.status === 422 && badQuery.json?.detail?.length === 4, `bad /v1/jobs query: ${badQuery.res.status} ${badQuery.text}`);
  const noCall = await call('GET', '/v1/jobs?call_id=no-such-call', { op: jobsOp });
  check(noCall.res.status === 200 && noCall.json?.jobs?.length === 0, `jobs of an unknown call: ${noCall.res.status} ${noCall.text}`);
  const noTranscript = await call('GET', '/v1/calls/no-such-call/transcript', { op: transcriptOp });
  check(noTranscript.res.status === 404, `transcript of an unknown call: ${noTranscript.res.status}`);

  // ---------------------------------------------------------------- replay
  const notDead = await call('POST', `/v1/jobs/${succeeded[0].id}/retry`, { op: retryOp });
  check(notDead.res.status === 409 && notDead.json?.error === 'job_not_dead', `retry of a succeeded job: ${notDead.res.status} ${notDead.text}`);
  const victim = dead[0];
  const replayed = await call('POST', `/v1/jobs/${victim.id}/retry`, { op: retryOp });
  const rj = replayed.json;
  check(replayed.res.status === 202, `retry of dead job ${victim.id}: ${replayed.res.status} ${replayed.text}`);
  check(rj?.state === 'queued' && rj?.attempts === 0 && rj?.finished_at === null, `the replayed job: ${replayed.text}`);
  check(rj?.last_error === victim.last_error, `the replayed job lost its last error: ${rj?.last_error}`);
  let final;
  for (let i = 0; i < 100; ++i) {
    final = (await call('GET', `/v1/jobs/${victim.id}`, { op: jobOp })).json;
    if (final?.state === 'succeeded' || final?.state === 'dead') break;
    await sleep(100);
  }
  check(['succeeded', 'dead'].includes(final?.state) && final.attempts >= 1, `the replayed job did not settle: ${JSON.stringify(final)}`);
  step(`job ${victim.id} replayed (202, queued, attempts 0), then ${final?.state}`);

  // The call follows its jobs: a replay with no other job dead takes FAILED back to PROCESSING_AI, and the
  // replay's outcome settles it again.
  const stillDead = dead.length - (final?.state === 'succeeded' ? 1 : 0);
  const resettled = await waitFor('the call settling after the replay', async () => {
    const c = await callOf(callId);
    return { done: settledStates.includes(c?.state) && c?.ai?.jobs?.outstanding === 0, value: c, seen: c };
  }, { tries: 50 });
  check(resettled.state === (stillDead > 0 ? 'FAILED' : 'COMPLETED') && resettled.ai.jobs.dead === stillDead,
        `after the replay (${stillDead} dead): ${resettled.state}, ai ${JSON.stringify(resettled.ai)}`);
  const replayTransitions = checkTransitions(resettled, 'after the replay');
  if (dead.length === 1) {
    check(replayTransitions.some((x) => x.from === 'FAILED' && x.to === 'PROCESSING_AI' && x.reason === 'a dead job was replayed'),
          `no FAILED -> PROCESSING_AI transition for the replay: ${JSON.stringify(replayTransitions)}`);
  }
  step(`after the replay the call is ${resettled.state}: ${replayTransitions.map((x) => `${x.from ?? '-'}->${x.to} (${x.reason})`).join(', ')}`);

  // ---------------------------------------------------------------- archive
  const archivedAnswer = await call('POST', `/v1/calls/${callId}/archive`, { op: archiveOp });
  const archivedCall = archivedAnswer.json;
  check(archivedAnswer.res.status === 200 && archivedCall?.state === 'ARCHIVED', `archive: ${archivedAnswer.res.status} ${archivedAnswer.text}`);
  const archiveTransitions = checkTransitions(archivedCall, 'the archive\'s answer');
  check(same(archiveTransitions.at(-1) && [archiveTransitions.at(-1).from, archiveTransitions.at(-1).reason], [resettled.state, 'archived by request']),
        `the archive's transition: ${JSON.stringify(archiveTransitions.at(-1))}`);
  for (const [what, r] of [
    ['a second archive', await call('POST', `/v1/calls/${callId}/archive`, { op: archiveOp })],
    ['an end of an archived call', await call('POST', `/v1/calls/${callId}/end`, { op: endOp })],
  ]) check(isConflict(r, 'invalid_transition'), `${what}: ${r.res.status} ${r.text}`);
  const archivedPacket = await call('POST', stream, { op: ingestOp, body: { sequence: 11, data: 'payload_11', timestamp: 1700000011.25 } });
  check(isConflict(archivedPacket, 'call_ended'), `a packet for an archived call: ${archivedPacket.res.status} ${archivedPacket.text}`);
  const archivedRepeat = await call('POST', stream, { op: ingestOp, body: sent[3] });
  check(archivedRepeat.res.status === 202 && archivedRepeat.json?.duplicate === true, `a repeat for an archived call: ${archivedRepeat.res.status} ${archivedRepeat.text}`);
  // Archived calls leave the default listing, and are the only ones listed with state=ARCHIVED.
  const listing = (await call('GET', '/v1/calls?limit=1000', { op: listCallsOp })).json?.calls ?? [];
  check(!listing.some((x) => x.id === callId) && listing.every((x) => x.state !== 'ARCHIVED'), `the default listing: ${JSON.stringify(listing.map((x) => [x.id, x.state]))}`);
  check(listing.some((x) => x.id === gapsId) && listing.every((x) => !('transitions' in x)), 'the default listing lacks other calls, or lists transitions');
  const archivedListing = (await call('GET', '/v1/calls?state=ARCHIVED', { op: listCallsOp })).json?.calls ?? [];
  check(archivedListing.some((x) => x.id === callId) && archivedListing.every((x) => x.state === 'ARCHIVED'),
        `state=ARCHIVED: ${JSON.stringify(archivedListing.map((x) => [x.id, x.state]))}`);
  // Unknown and invalid calls.
  for (const op of [endOp, archiveOp]) {
    const verb = op[0].split('/').at(-1);
    const unknown = await call('POST', `/v1/calls/no-such-call/${verb}`, { op });
    check(unknown.res.status === 404 && unknown.json?.error === 'not_found', `${verb} of an unknown call: ${unknown.res.status} ${unknown.text}`);
    const dots = await call('POST', `/v1/calls/.../${verb}`, { op });
    check(dots.res.status === 422 && same(dots.json?.detail?.[0]?.loc, ['path', 'call_id']), `${verb} of call "...": ${dots.res.status} ${dots.text}`);
  }
  step(`archived ${callId}: 200 ARCHIVED; a second archive or end 409 invalid_transition; out of the default listing`);

  // ---------------------------------------------------------------- media declaration and audio
  const audioCallId = 'conf-audio';
  const declareOp = ['/v1/calls/{call_id}', 'post'];
  const declaration = await call('POST', `/v1/calls/${audioCallId}`, { op: declareOp, body: { media: { format: 'PCMU/8000', packet_ms: 20 } } });
  check(declaration.res.status === 201 && declaration.json?.media?.format === 'pcmu/8000' && declaration.json?.media?.declared === true,
        `declaring ${audioCallId}: ${declaration.res.status} ${declaration.text}`);
  const repeated = await call('POST', `/v1/calls/${audioCallId}`, { op: declareOp, body: { media: { format: 'pcmu/8000' } } });
  check(repeated.res.status === 200, `repeating the declaration: ${repeated.res.status}`);
  const conflicting = await call('POST', `/v1/calls/${audioCallId}`, { op: declareOp, body: { media: { format: 'l16/16000' } } });
  check(conflicting.res.status === 409 && conflicting.json?.error === 'media_conflict', `another declaration: ${conflicting.res.status} ${conflicting.text}`);
  const badDeclaration = await call('POST', `/v1/calls/${audioCallId}`, { op: declareOp, body: { media: { format: 'opus/48000', packet_ms: 0 } } });
  check(badDeclaration.res.status === 422 && badDeclaration.json?.detail?.length === 2, `a bad declaration: ${badDeclaration.res.status} ${badDeclaration.text}`);
  const silence = Buffer.alloc(160, 0xff).toString('base64');  // 20 ms of mu-law silence
  for (const sequence of [1, 3]) {
    const r = await call('POST', `/v1/call/stream/${audioCallId}`, { op: ingestOp, body: { sequence, data: silence, timestamp: 1700000000 + sequence / 50 } });
    check(r.res.status === 202, `audio packet ${sequence}: ${r.res.status} ${r.text}`);
  }
  const undecodable = await call('POST', `/v1/call/stream/${audioCallId}`, { op: ingestOp, body: { sequence: 4, data: 'audio_payload', timestamp: 1700000000.08 } });
  check(undecodable.res.status === 422 && same(undecodable.json?.detail?.[0]?.loc, ['body', 'data']), `undecodable audio: ${undecodable.res.status} ${undecodable.text}`);
  const tooLate = await call('POST', `/v1/calls/${callId}`, { op: declareOp, body: { media: { format: 'pcmu/8000' } } });
  check(tooLate.res.status === 409, `declaring ${callId}, which has packets: ${tooLate.res.status} ${tooLate.text}`);
  const wav = await call('GET', `/v1/calls/${audioCallId}/audio`, { op: ['/v1/calls/{call_id}/audio', 'get'] });
  check(wav.res.status === 200 && wav.res.headers.get('content-type') === 'audio/wav' &&
        Number(wav.res.headers.get('content-length')) === 44 + 3 * 160 * 2 && wav.res.headers.get('x-audio-silent-packets') === '1',
        `GET /v1/calls/${audioCallId}/audio: ${wav.res.status} ${wav.res.headers.get('content-type')} ${wav.res.headers.get('content-length')} bytes`);
  const noAudio = await call('GET', `/v1/calls/${callId}/audio`, { op: ['/v1/calls/{call_id}/audio', 'get'] });
  check(noAudio.res.status === 409 && noAudio.json?.error === 'no_audio', `GET /v1/calls/${callId}/audio: ${noAudio.res.status} ${noAudio.text}`);
  step(`${audioCallId}: declared pcmu/8000 (201, repeat 200, other 409, bad 422), undecodable packet 422, WAV of 3 packets with 1 silent; ${callId} has no audio (409)`);

  // ---------------------------------------------------------------- the event stream
  const eventSchema = spec.components.schemas.Event;
  const created = await readSse(`/v1/events?after=0&kind=call.created,call.state_changed&call=${encodeURIComponent(callId)}`, 3);
  check(created.res.status === 200 && created.frames.length >= 3, `GET /v1/events: ${created.res.status} with ${created.frames.length} events`);
  for (const f of created.frames) {
    check(f.event === '' && f.id === f.json.id && f.json.call_id === callId, `event frame ${JSON.stringify(f)}`);
    const problems = validate(eventSchema, f.json, '$', true);
    check(problems.length === 0, `event ${f.json.id} against Event: ${problems.join('; ')}`);
  }
  check(created.frames[0]?.json.kind === 'call.created', `the first event of ${callId}: ${created.frames[0]?.json.kind}`);
  const everything = await readSse('/v1/events?after=0', 50);
  for (const f of everything.frames) {
    const problems = validate(eventSchema, f.json, '$', true);
    check(problems.length === 0, `event ${f.json.id} (${f.json.kind}) against Event: ${problems.join('; ')}`);
  }
  check(everything.frames.every((f, i) => f.json.id === i + 1), 'the log\'s first events are not 1, 2, 3...');
  const resumed = await readSse('/v1/events?after=0', 1, { 'Last-Event-ID': '10' });
  check(resumed.frames[0]?.json.id === 11, `Last-Event-ID 10 resumed at ${resumed.frames[0]?.json.id}`);
  const badKind = await call('GET', '/v1/events?kind=nope', { op: ['/v1/events', 'get'] });
  check(badKind.res.status === 422 && same(badKind.json?.detail?.[0]?.loc, ['query', 'kind']), `kind=nope: ${badKind.res.status} ${badKind.text}`);
  step(`GET /v1/events: ${everything.frames.length} events valid against Event, ids consecutive, Last-Event-ID resumes, a bad kind 422`);

  // ---------------------------------------------------------------- every documented read, GET and HEAD
  const params = { call_id: callId, job_id: String(jobs[0].id) };
  for (const [path, item] of Object.entries(spec.paths)) {
    const documented = methods.filter((m) => item[m]);
    let target = path;
    for (const p of [...(item.parameters ?? []), ...Object.values(item).flatMap((o) => o?.parameters ?? [])].map(resolve)) {
      if (p.in !== 'path') continue;
      const value = (p.name === 'call_id' && path.endsWith('/audio') ? audioCallId : params[p.name]) ?? resolve(p.schema)?.enum?.[0];
      target = target.replace(`{${p.name}}`, encodeURIComponent(value));
    }
    // Every operation documents a success: a 2XX, or 101 for a WebSocket endpoint (tag `streams`), which a
    // plain GET answers with 426.
    const websocket = item.get?.tags?.includes('streams');
    for (const m of documented) {
      const codes = Object.keys(item[m].responses ?? {});
      check(codes.some((c) => c.startsWith('2')) || (websocket && codes.includes('101')), `${m.toUpperCase()} ${path}: no success response documented`);
    }
    if (item.get?.responses?.['200']?.content?.['text/event-stream']) {
      // A stream never ends by itself: its head and first bytes, then HEAD (the same head, no body).
      const g = await readSse(target, 0, { 'X-Request-ID': 'conformance' });
      check(g.res.status === 200 && g.res.headers.get('content-type') === 'text/event-stream', `GET ${target}: ${g.res.status} ${g.res.headers.get('content-type')}`);
      check(g.res.headers.get('x-request-id') === 'conformance', `GET ${target}: X-Request-ID not echoed`);
      check(g.res.headers.get('content-length') === null, `GET ${target}: a stream with a Content-Length`);
      const h = await call('HEAD', target);
      check(h.res.status === 200 && h.text === '' && h.res.headers.get('content-type') === 'text/event-stream', `HEAD ${target}: ${h.res.status}`);
    } else if (item.get) {
      const g = await call('GET', target, { op: [path, 'get'], headers: { 'X-Request-ID': 'conformance' } });
      check(websocket ? g.res.status === 426 && g.json?.error === 'upgrade_required' : g.res.ok, `GET ${target}: ${g.res.status}`);
      check(g.res.headers.get('x-request-id') === 'conformance', `GET ${target}: X-Request-ID not echoed`);
      const h = await call('HEAD', target);
      check(h.res.status === g.res.status && h.text === '', `HEAD ${target}: ${h.res.status} with ${h.text.length} body bytes`);
      // /metrics counts the GET itself, so its length moves between the two requests.
      const live = path === '/metrics';
      check(live ? Number(h.res.headers.get('content-length')) > 0
                 : h.res.headers.get('content-length') === g.res.headers.get('content-length'),
            `HEAD ${target}: Content-Length ${h.res.headers.get('content-length')}, GET had ${g.res.headers.get('content-length')}`);
      check(h.res.headers.get('content-type') === g.res.headers.get('content-type'), `HEAD ${target}: other Content-Type`);
    }
    // A method the path does not have: 405 and the Allow header.
    const other = documented.includes('put') ? 'PATCH' : 'PUT';
    const r405 = await call(other, target);
    const allow = documented.map((m) => m.toUpperCase()).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])).join(', ');
    check(r405.res.status === 405 && r405.json?.error === 'method_not_allowed', `${other} ${target}: ${r405.res.status}`);
    check(r405.res.headers.get('allow') === allow, `${other} ${target}: Allow "${r405.res.headers.get('allow')}", expected "${allow}"`);
  }
  const options = await call('OPTIONS', '/v1/jobs');
  check(options.res.status === 405, `OPTIONS /v1/jobs: ${options.res.status}`);
  step(`every documented path: GET valid, HEAD without body, other methods 405 with Allow`);

  // ---------------------------------------------------------------- packets: sequence 0 and number form
  const packetsOp = ['/v1/calls/{call_id}/packets', 'get'];
  const packets = await call('GET', `/v1/calls/${callId}/packets`, { op: packetsOp });
  check(packets.json?.packets?.[0]?.sequence === 0, `the default page does not start with sequence 0: ${packets.text.slice(0, 200)}`);
  check(packets.text.includes('"timestamp":1700000000.25,'), 'timestamp 1700000000.25 does not read back in its shortest form');
  const fromMinus1 = await call('GET', `/v1/calls/${callId}/packets?after=-1&limit=1`, { op: packetsOp });
  check(fromMinus1.json?.packets?.[0]?.sequence === 0 && fromMinus1.json?.next_after === 0, `after=-1&limit=1: ${fromMinus1.text}`);
  const belowMinus1 = await call('GET', `/v1/calls/${callId}/packets?after=-2`, { op: packetsOp });
  check(belowMinus1.res.status === 422, `after=-2: ${belowMinus1.res.status}`);
  step('packets listed from sequence 0; timestamps in shortest form');

  // ---------------------------------------------------------------- 413 on a declared Content-Length
  const declared = bodyLimit + 1;
  const r413 = await raw(`POST ${stream} HTTP/1.1\r\nHost: ${base.host}\r\nContent-Type: application/json\r\n` +
                         `Content-Length: ${declared}\r\n\r\n`);
  const statusLine = r413.data.split('\r\n')[0];
  check(statusLine === 'HTTP/1.1 413 Payload Too Large' || statusLine.startsWith('HTTP/1.1 413'), `Content-Length ${declared}: ${statusLine}`);
  const body413 = r413.data.slice(r413.data.indexOf('\r\n\r\n') + 4);
  let json413;
  try { json413 = JSON.parse(body413); } catch { /* reported below */ }
  check(json413?.error === 'body_too_large', `413 body: ${body413}`);
  const schema413 = spec.paths['/v1/call/stream/{call_id}'].post.responses['413']?.content?.['application/json']?.schema;
  if (check(schema413, 'ingest documents no 413') && json413) check(validate(schema413, json413).length === 0, '413 body does not match its schema');
  check(r413.closed, 'the connection stayed open after 413');
  step(`Content-Length ${declared} over the ${bodyLimit}-byte limit: ${statusLine}`);

  // ---------------------------------------------------------------- the call_id pattern: document and server agree
  const idPattern = new RegExp(resolve(spec.components.schemas.CallId).pattern, 'u');
  for (const id of ['.', '..', '...', '.a', 'a.', '-', 'a84b4c76e66710@pc33.example.com', '+14155550123', 'x'.repeat(128),
                    'x'.repeat(129), 'a b', 'é', 'a/b', 'a%b']) {
    // '.' and '..' are dot segments that fetch would remove: they are sent as written, on a raw connection.
    let status;
    if (id === '.' || id === '..') {
      const r = await raw(`GET /v1/calls/${id}/gaps HTTP/1.1\r\nHost: ${base.host}\r\nConnection: close\r\n\r\n`);
      status = Number(r.data.split(' ')[1]);
    } else {
      status = (await call('GET', `/v1/calls/${encodeURIComponent(id)}/gaps`, { op: gapsOp })).res.status;
    }
    const documented = idPattern.test(id);
    check(status === (documented ? 404 : 422), `call_id ${JSON.stringify(id.length > 20 ? `${id.slice(0, 8)}...(${id.length})` : id)}: the document says ${documented ? 'valid' : 'invalid'}, the server answered ${status}`);
  }
  step('the server accepts exactly the call_ids the document\'s pattern matches');

  // ---------------------------------------------------------------- the idle call ended by itself
  const idled = await waitFor(`the end of ${idleId} after --idle-timeout ${idleTimeout}s`, async () => {
    const c = await callOf(idleId);
    return { done: c?.state !== 'IN_PROGRESS', value: c, seen: c };
  }, { tries: (idleTimeout + 10) * 10 });
  check(idled.end_reason === 'idle timeout' && idled.ended_at - idled.last_packet_at >= idleTimeout - 1e-3,
        `${idleId}: end_reason ${idled.end_reason}, ended ${idled.ended_at - idled.last_packet_at} s after its last packet`);
  check(idled.ai?.next_segment === 2, `${idleId}: its packet was not cut into a job at the end: next_segment ${idled.ai?.next_segment}`);
  const idleTransitions = checkTransitions(idled, idleId);
  check(idleTransitions[1]?.to === 'PROCESSING_AI' && idleTransitions[1]?.reason === 'idle timeout', `${idleId}: ${JSON.stringify(idleTransitions)}`);
  const lateForIdle = await call('POST', `/v1/call/stream/${idleId}`, { op: ingestOp, body: { sequence: 2, data: 'idle_2', timestamp: 1700000501 } });
  check(isConflict(lateForIdle, 'call_ended'), `a packet after the idle end: ${lateForIdle.res.status} ${lateForIdle.text}`);
  step(`${idleId} ended by itself ${(idled.ended_at - idled.last_packet_at).toFixed(2)} s after its packet (${idled.state})`);
} catch (err) {
  fail(err.stack ?? err.message);
}

if (failures.length) {
  console.error(`${failures.length} check(s) failed`);
  process.exit(1);
}
console.log('PASS: the server answers as /openapi.json documents');
