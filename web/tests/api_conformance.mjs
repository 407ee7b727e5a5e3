// Conformance of the running aipbx server to the OpenAPI document it serves.
//
// Usage: node web/tests/api_conformance.mjs <base-url>
// (tests/web/api_conformance.sh starts aipbx on a free port with a fast, half-failing mock engine and calls this.)
//
// Drives one call through ingest and the AI pipeline until every job has settled, then checks that:
// - every documented GET operation answers a documented status with a body valid against the documented
//   schema (a small JSON Schema subset validator below: $ref, type, const, enum, required, properties,
//   additionalProperties: false, items, minimum/maximum, minLength/maxLength, pattern, anyOf/oneOf/allOf),
//   and HEAD gives the same status and headers without a body;
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

// Returns a list of problems of `value` against `schema` (empty: valid).
function validate(schemaIn, value, where = '$') {
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
      if (key in value) errors.push(...validate(sub, value[key], `${where}.${key}`));
    }
    if (schema.additionalProperties === false) {
      for (const key of Object.keys(value)) if (!(key in (schema.properties ?? {}))) errors.push(`${where}: unexpected "${key}"`);
    }
  }
  if (Array.isArray(value) && schema.items) value.forEach((item, i) => errors.push(...validate(schema.items, item, `${where}[${i}]`)));
  for (const sub of schema.allOf ?? []) errors.push(...validate(sub, value, where));
  if (schema.anyOf && !schema.anyOf.some((s) => validate(s, value, where).length === 0)) errors.push(`${where}: matches no anyOf`);
  if (schema.oneOf && schema.oneOf.filter((s) => validate(s, value, where).length === 0).length !== 1) errors.push(`${where}: does not match exactly one oneOf`);
  return errors;
}

// ------------------------------------------------------------------ HTTP helpers
// Sends a request and checks the answer against the operation `op` of the document (path template +
// method): the status must be documented, a JSON body must validate, documented headers must be present.
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
        const problems = validate(media.schema, json);
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

try {
  // ---------------------------------------------------------------- static documents
  check(specResponse.headers.get('cache-control') === 'no-cache', `/openapi.json Cache-Control is ${specResponse.headers.get('cache-control')}`);
  const docs = await call('GET', '/docs', { op: ['/docs', 'get'] });
  check(docs.res.headers.get('cache-control') === 'no-cache', `/docs Cache-Control is ${docs.res.headers.get('cache-control')}`);

  // ---------------------------------------------------------------- ingest one call
  const callId = 'conf-1';
  const stream = `/v1/call/stream/${callId}`;
  const ingestOp = ['/v1/call/stream/{call_id}', 'post'];
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
  check(conflict.res.status === 409 && conflict.json?.error === 'sequence_conflict', `a conflicting packet: ${conflict.res.status} ${conflict.text}`);
  const badType = await call('POST', stream, { op: ingestOp, body: 'x', headers: { 'Content-Type': 'text/plain' } });
  check(badType.res.status === 415, `text/plain body: ${badType.res.status}`);
  const bad = await call('POST', '/v1/call/stream/bad%20id', { op: ingestOp, body: { sequence: -1, data: 5 } });
  check(bad.res.status === 422 && bad.json?.detail?.length === 4, `an invalid packet: ${bad.res.status} ${bad.text}`);
  step(`stored ${sent.length} packets of ${callId} (sequence 0 included, 4 before 3)`);

  // ---------------------------------------------------------------- wait for the AI pipeline to settle
  // Settled: every packet is cut into a job (next_segment past the last sequence) and every job is final.
  let settled;
  let lastSeen;
  for (let i = 0; i < 200; ++i) {
    const c = (await call('GET', `/v1/calls/${callId}`)).json;
    const page = (await call('GET', `/v1/jobs?call_id=${callId}&limit=1000`)).json;
    lastSeen = { ai: c?.ai, jobs: page?.jobs?.map((j) => j.state) };
    const final = page?.jobs?.length > 0 && page.jobs.every((j) => j.state === 'succeeded' || j.state === 'dead');
    if (c?.ai?.next_segment > c?.last_sequence && final) { settled = c; break; }
    await sleep(100);
  }
  if (!settled) throw new Error(`the call's AI jobs did not settle within 20 s: ${JSON.stringify(lastSeen)}`);
  step(`settled: ai ${JSON.stringify(settled.ai)}`);

  // ---------------------------------------------------------------- jobs, transcript, call: consistent
  const jobsOp = ['/v1/jobs', 'get'];
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
  check(counts.succeeded === succeeded.length && counts.dead === dead.length, `call ai.jobs ${JSON.stringify(counts)} disagrees with /v1/jobs`);
  check(settled.ai.status === 'failed', `ai.status is ${settled.ai.status} with a dead job`);
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

  // ---------------------------------------------------------------- every documented read, GET and HEAD
  const params = { call_id: callId, job_id: String(jobs[0].id) };
  for (const [path, item] of Object.entries(spec.paths)) {
    const documented = methods.filter((m) => item[m]);
    let target = path;
    for (const p of [...(item.parameters ?? []), ...Object.values(item).flatMap((o) => o?.parameters ?? [])].map(resolve)) {
      if (p.in !== 'path') continue;
      const value = params[p.name] ?? resolve(p.schema)?.enum?.[0];
      target = target.replace(`{${p.name}}`, encodeURIComponent(value));
    }
    if (item.get) {
      const g = await call('GET', target, { op: [path, 'get'], headers: { 'X-Request-ID': 'conformance' } });
      check(g.res.ok, `GET ${target}: ${g.res.status}`);
      check(g.res.headers.get('x-request-id') === 'conformance', `GET ${target}: X-Request-ID not echoed`);
      const h = await call('HEAD', target);
      check(h.res.status === g.res.status && h.text === '', `HEAD ${target}: ${h.res.status} with ${h.text.length} body bytes`);
      check(h.res.headers.get('content-length') === g.res.headers.get('content-length'),
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
} catch (err) {
  fail(err.stack ?? err.message);
}

if (failures.length) {
  console.error(`${failures.length} check(s) failed`);
  process.exit(1);
}
console.log('PASS: the server answers as /openapi.json documents');
