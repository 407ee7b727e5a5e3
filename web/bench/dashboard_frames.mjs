// The dashboard's frame times in Chromium (headless, playwright-core): idle (no calls: the reference), then
// with N live calls, on the list as it updates, and while the list is scrolled.
//
//   node web/bench/dashboard_frames.mjs <base-url> <seconds-per-phase> <calls> <out.json> <screenshot.png> -- <load command...>
//
// Opens the dashboard at <base-url>, measures the idle phase, starts the load command (the calls), waits
// until the page counts <calls> live calls, measures the loaded phases, saves a screenshot of the list, and
// waits for the load command to finish. For each phase: every requestAnimationFrame delta (p50/p95/p99/max,
// frames over 50 ms), the long tasks (PerformanceObserver 'longtask': main-thread tasks over 50 ms) and the
// main thread's busy time from Chromium's own counters (CDP Performance.getMetrics: TaskDuration,
// ScriptDuration, LayoutDuration, RecalcStyleDuration), so the page's own work is told apart from the
// machine's load (the server, its load and the browser share the same cores).
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';

const dash = process.argv.indexOf('--');
const [base, phaseArg, callsArg, outJson, screenshot] = process.argv.slice(2, dash);
const load = process.argv.slice(dash + 1);
if (dash < 0 || !screenshot || !load.length) {
  console.error('usage: node dashboard_frames.mjs <base-url> <seconds-per-phase> <calls> <out.json> <screenshot.png> -- <load command...>');
  process.exit(2);
}
const phaseSeconds = Number(phaseArg);
const calls = Number(callsArg);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const cdp = await page.context().newCDPSession(page);
await cdp.send('Performance.enable');
page.on('pageerror', (e) => console.error('page error:', e.message));

// In the page: a frame-time recorder and a long-task observer, started and stopped by phase.
await page.addInitScript(() => {
  const rec = { frames: [], longTasks: [], on: false, scroll: 0 };
  window.__frames = rec;
  let last = 0;
  const tick = (t) => {
    if (rec.on && last) rec.frames.push(t - last);
    last = t;
    if (rec.on && rec.scroll) {
      const body = document.querySelector('.vbody');
      if (body) {
        body.scrollTop += rec.scroll;
        if (body.scrollTop + body.clientHeight >= body.scrollHeight - 2 || body.scrollTop === 0) rec.scroll = -rec.scroll;
      }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => {
    if (rec.on) for (const e of list.getEntries()) rec.longTasks.push(e.duration);
  }).observe({ entryTypes: ['longtask'] });
});

const metric = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
const pct = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

async function measure(name, scroll = 0) {
  await page.evaluate((s) => Object.assign(window.__frames, { frames: [], longTasks: [], on: true, scroll: s }), scroll);
  const m0 = await metric();
  const t0 = Date.now();
  await page.waitForTimeout(phaseSeconds * 1000);
  const m1 = await metric();
  const wall = (Date.now() - t0) / 1000;
  const rec = await page.evaluate(() => {
    const r = window.__frames;
    r.on = false;
    r.scroll = 0;
    return { frames: r.frames, longTasks: r.longTasks };
  });
  const f = rec.frames.slice().sort((a, b) => a - b);
  const busy = (k) => (m1[k] - m0[k]) / wall;  // seconds of main thread per second
  const live = await page.evaluate(() => (document.querySelector('section.calls') ? document.querySelector('.stats .stat b')?.textContent : '-'));
  const rows = await page.evaluate(() => document.querySelectorAll('a.vrow').length);
  const r = {
    phase: name, live_calls: live, row_elements: rows, frames: f.length, fps: f.length / wall,
    p50_ms: pct(f, 0.5), p95_ms: pct(f, 0.95), p99_ms: pct(f, 0.99), max_ms: f[f.length - 1],
    frames_over_50ms: f.filter((d) => d > 50).length,
    long_tasks: rec.longTasks.length, long_task_ms: rec.longTasks.reduce((a, b) => a + b, 0),
    main_thread_busy: busy('TaskDuration'), script: busy('ScriptDuration'),
    layout: busy('LayoutDuration') + busy('RecalcStyleDuration'),
  };
  console.log(`${name.padEnd(22)} live ${String(r.live_calls).padStart(5)}  rows in DOM ${String(rows).padStart(3)}  `
    + `${r.fps.toFixed(1)} fps  frame p50 ${r.p50_ms.toFixed(1)} p95 ${r.p95_ms.toFixed(1)} p99 ${r.p99_ms.toFixed(1)} `
    + `max ${r.max_ms.toFixed(1)} ms  >50ms ${r.frames_over_50ms}  long tasks ${r.long_tasks} (${r.long_task_ms.toFixed(0)} ms)  `
    + `main thread ${(100 * r.main_thread_busy).toFixed(1)} % (script ${(100 * r.script).toFixed(1)} %, style+layout ${(100 * r.layout).toFixed(1)} %)`);
  return r;
}

const results = [];
let loadProc = null;
try {
  await page.goto(`${base}/`);
  await page.waitForFunction(() => document.getElementById('live').textContent === 'live', null, { timeout: 20_000 });
  await page.waitForTimeout(2000);
  results.push(await measure('idle (reference)'));
  loadProc = spawn(load[0], load.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
  const loadDone = new Promise((resolve) => loadProc.on('exit', resolve));
  await page.waitForFunction((n) => Number(document.querySelector('.stats .stat b')?.textContent.replace(/,/g, '')) >= n,
    calls, { timeout: 120_000, polling: 500 });
  await page.waitForTimeout(3000);  // packets/s needs two readings of the list
  results.push(await measure(`${calls} calls, list`));
  results.push(await measure(`${calls} calls, scrolling`, 37));
  await page.screenshot({ path: screenshot });
  const firstCall = await page.evaluate(() => document.querySelector('a.vrow')?.getAttribute('href'));
  await page.goto(`${base}/${firstCall}`);
  await page.waitForFunction(() => document.querySelector('canvas.timeline'), null, { timeout: 20_000 });
  results.push(await measure(`${calls} calls, a call`));
  console.log('waiting for the load to finish...');
  await loadDone;
} finally {
  if (loadProc && loadProc.exitCode === null) loadProc.kill('SIGTERM');
  await browser.close();
}
writeFileSync(outJson, JSON.stringify(results, null, 2));
