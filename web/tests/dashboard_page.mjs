// Browser test of the dashboard at /: Debian's Chromium, headless, driven by playwright-core, against the
// real aipbx binary (tests/web/dashboard_page.sh starts it with an API token, one AI worker and a mock engine
// whose seeded outcomes are: three successes, two failures, one success).
//
// Usage: node web/tests/dashboard_page.mjs <base-url> <token> <screenshot-dir>
//
// Steps, each with a screenshot (dashboard-NN-*.png in <screenshot-dir>):
//   the page asks for the token (the API answered 401) and works once it is given;
//   a call appears on the live list as its packets are posted over HTTP;
//   on the call's page a gap (4-5) is drawn on the timeline, then filled by the late packets;
//   the transcript grows as the segments' jobs succeed;
//   a job fails, is shown retrying with its error, then dead with a Replay button;
//   Replay makes it succeed and its text joins the transcript;
//   the queue view (counts, charts, no dead job left) and the nodes view.
// Also: nothing is loaded from anywhere but the server, and the page logs no error. Exits 0 on success, 1
// with the failures otherwise.
import { chromium } from 'playwright-core';
import path from 'node:path';

const [baseArg, token, outDir] = process.argv.slice(2);
if (!baseArg || !token || !outDir) {
  console.error('usage: node dashboard_page.mjs <base-url> <token> <screenshot-dir>');
  process.exit(2);
}
const base = new URL(baseArg);
const callId = 'dash-call-1';
const failures = [];
const fail = (msg) => { failures.push(msg); console.error(`FAIL: ${msg}`); };
const step = (msg) => console.log(`- ${msg}`);
const started = Date.now();

async function post(sequence) {
  const res = await fetch(new URL(`/v1/call/stream/${callId}`, base), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ sequence, data: `w${sequence}`, timestamp: 1_700_000_000 + sequence * 0.02 }),
  });
  if (res.status !== 202) throw new Error(`packet ${sequence}: ${res.status} ${await res.text()}`);
}

async function postAll(sequences) {
  for (const s of sequences) await post(s);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', '--disable-quic'],
});
let shot = 0;
let page;
async function screenshot(name) {
  shot += 1;
  const file = path.join(outDir, `dashboard-${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  step(`screenshot ${path.basename(file)}`);
}
// Waits until `fn` (run in the page with `arg`) is truthy.
async function until(what, fn, arg, timeout = 15_000) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 100 });
    step(what);
    return true;
  } catch {
    fail(`${what}: not within ${timeout / 1000} s`);
    return false;
  }
}
// The colour drawn on the call's timeline bar at `sequence` ([r, g, b]).
function colorAt(sequence) {
  return page.evaluate((s) => {
    const canvas = document.querySelector('canvas.timeline');
    const last = Number(canvas.dataset.last);
    const x = Math.floor(((s - 0.5) / last) * canvas.width);
    return [...canvas.getContext('2d').getImageData(x, 2, 1, 1).data.slice(0, 3)];
  }, sequence);
}
const near = (rgb, hex) => {
  const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return rgb.every((v, i) => Math.abs(v - want[i]) < 12);
};
const GREEN = '#2e9e5b';
const AMBER = '#e0a21b';

try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 860 } });
  page = await context.newPage();
  // Until the token is given, the API's 401s are expected (and the browser logs each).
  let before_token = true;
  page.on('console', (m) => {
    if (m.type() === 'error' && !(before_token && m.text().includes('401'))) fail(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:' && u.origin !== base.origin) fail(`request outside the server: ${r.url()}`);
  });
    page.on('response', (r) => { if (r.status() >= 500) fail(`${r.status()} for ${r.url()}`); });

  // ---- the token
  await page.goto(new URL('/', base).href);
  await until('without a token the page asks for one', () => document.getElementById('token-dialog').open);
  await screenshot('token');
  await page.fill('#token-dialog input', token);
  await Promise.all([page.waitForEvent('load'), page.click('#token-dialog button')]);
  before_token = false;
  await until('with the token the event stream is live', () => document.getElementById('live').textContent === 'live');

  // ---- a call appears
  await postAll([1, 2, 3]);
  await until('the call appears on the live list', (id) =>
    [...document.querySelectorAll('a.vrow')].some((r) => r.style.display !== 'none' && r.textContent.includes(id)), callId);
  await until('with its 3 packets', (id) =>
    [...document.querySelectorAll('a.vrow')].some((r) => r.textContent.includes(id) && r.children[4].textContent === '3'), callId);
  await screenshot('call-appears');

  // ---- a gap opens, then fills
  await postAll([6, 7, 8]);
  await until('the list shows 2 missing packets', (id) =>
    [...document.querySelectorAll('a.vrow')].some((r) => r.textContent.includes(id) && r.children[5].textContent === '2'), callId);
  await page.click(`a.vrow[href="#/call/${callId}"]`);
  await until('the call page draws its timeline', () => document.querySelector('canvas.timeline')?.dataset.last === '8');
  await until('the open range 4-5 is listed over the timeline', () => document.querySelector('.trackhead')?.textContent.includes('missing 4–5 (2)'));
  const gapColor = await colorAt(4);
  const before = await colorAt(2);
  if (!near(gapColor, AMBER)) fail(`sequence 4 is drawn ${gapColor}, not missing (amber)`);
  if (!near(before, GREEN)) fail(`sequence 2 is drawn ${before}, not received (green)`);
  step(`the timeline draws 4 amber ${gapColor}, 2 green ${before}`);
  await screenshot('gap-open');
  await postAll([4, 5]);
  await until('the gap is filled', () => document.querySelector('.trackhead')?.textContent.includes('missing none (0)'));
  const filled = await colorAt(4);
  if (!near(filled, GREEN)) fail(`sequence 4 is drawn ${filled} once received, not green`);
  await until('the fill is in the call\'s events', () => document.querySelector('.activity')?.textContent.includes('gap.filled'));
  await screenshot('gap-filled');

  // ---- the transcript grows
  const segments = () => page.locator('.transcript p.seg:not(.partial)').count();
  await until('the first segment\'s transcript', () => document.querySelectorAll('.transcript p.seg').length >= 1, null, 20_000);
  await screenshot('transcript-1');
  await postAll([9, 10, 11, 12]);
  await until('three segments, in sequence order', () => {
    const s = [...document.querySelectorAll('.transcript p.seg')].map((p) => p.textContent);
    return s.length === 3 && s[0].includes('w1 w2 w3 w4') && s[1].includes('w5 w6 w7 w8') && s[2].includes('w9 w10 w11 w12');
  }, null, 20_000);
  step(`${await segments()} segments`);
  await screenshot('transcript-3');

  // ---- a job retries, then dies
  await postAll([13, 14, 15, 16]);
  await until('the fourth job is retrying, with its error', () => {
    const row = document.querySelector('tr[data-state="retrying"]');
    return row && row.textContent.includes('AI Service Unavailable') && row.textContent.includes('next try');
  }, null, 20_000);
  await screenshot('job-retrying');
  await until('then dead, with a Replay button', () => document.querySelector('tr[data-state="dead"] button.replay'), null, 20_000);
  await until('the call\'s AI status is failed', () => document.querySelector('.callhead')?.textContent.includes('AI failed'));
  await screenshot('job-dead');

  // ---- Replay
  await page.click('tr[data-state="dead"] button.replay');
  await until('the replayed job succeeds', () => !document.querySelector('tr[data-state="dead"]') &&
    document.querySelectorAll('tr[data-state="succeeded"]').length === 4, null, 20_000);
  await until('and its text joins the transcript', () => {
    const s = [...document.querySelectorAll('.transcript p.seg')].map((p) => p.textContent);
    return s.length === 4 && s[3].includes('w13 w14 w15 w16');
  });
  await until('the events tell the replay', () => document.querySelector('.activity')?.textContent.includes('job.replayed'));
  await until('the call\'s AI status is no longer failed, with every job done', () => {
    const head = document.querySelector('.callhead')?.textContent ?? '';
    return !head.includes('AI failed') && head.includes('4 / 4');
  }, null, 5_000);
  await screenshot('replayed');

  // ---- the queue and the nodes
  await page.click('nav a[data-view="queue"]');
  await until('the queue view counts 4 succeeded, none dead', () => {
    const text = (cls) => document.querySelector(`.t-${cls} b`)?.textContent;
    return text('succeeded') === '4' && text('dead') === '0';
  });
  await until('and draws its charts', () => document.querySelectorAll('.chart canvas').length === 3);
  await page.waitForTimeout(2500);  // a few readings on the charts
  await screenshot('queue');
  await page.click('nav a[data-view="nodes"]');
  await until('the nodes view shows this node', () => document.querySelector('.nodes-table')?.textContent.includes('this node'));
  await screenshot('nodes');
  await page.click('nav a[data-view="calls"]');
  await until('back on the list', () => document.querySelectorAll('a.vrow').length > 0);
  await screenshot('calls');
} catch (err) {
  fail(`unexpected: ${err.stack ?? err}`);
} finally {
  await browser.close();
}
console.log(`${failures.length ? 'FAILED' : 'passed'} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(failures.length ? 1 : 0);
