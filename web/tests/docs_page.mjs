// Browser test of aipbx's /docs page: Debian's Chromium, headless, driven by playwright-core.
//
// Usage: node web/tests/docs_page.mjs <base-url> <screenshot.png>
// (tests/web/docs_page.sh starts aipbx on a free port and calls this.)
//
// Checks that Swagger UI renders one block per operation of /openapi.json, each under its tag's section
// (ingest, calls, jobs, ...), that the page loads nothing from anywhere but the aipbx server and logs no
// console error, that the calls section shows the lifecycle diagram, that "Try it out" / "Execute" on the
// ingest operation posts a packet that is answered 202 and really stored, that "Try it out" on GET /v1/jobs
// lists the AI job that packet queued, and that "Try it out" on POST /v1/calls/{call_id}/end ends that call
// (200, then 409 invalid_transition when executed again). Saves a full-page screenshot. Exits 0 on success,
// 1 with a list of failures otherwise.
import { chromium } from 'playwright-core';

const [baseArg, screenshotPath] = process.argv.slice(2);
if (!baseArg || !screenshotPath) {
  console.error('usage: node docs_page.mjs <base-url> <screenshot.png>');
  process.exit(2);
}
const base = new URL(baseArg);
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const timeout = 30_000;
const callId = 'docs-ui-1@pbx.test';  // '@' is percent-encoded by Swagger UI and decoded by aipbx
const requestId = 'docs-page-test';

const failures = [];
const fail = (msg) => { failures.push(msg); console.error(`FAIL: ${msg}`); };
const step = (msg) => console.log(`- ${msg}`);

// What the page should show: every operation of the document the server serves.
const spec = await (await fetch(new URL('/openapi.json', base))).json();
const methods = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);
const operations = [];
for (const [path, item] of Object.entries(spec.paths)) {
  for (const [method, op] of Object.entries(item)) {
    if (methods.has(method)) operations.push({ path, method, tag: op.tags?.[0] ?? 'default', id: op.operationId });
  }
}
const ingest = operations.find((o) => o.id === 'ingestPacket');
if (!ingest) {
  console.error('FAIL: /openapi.json has no ingestPacket operation');
  process.exit(1);
}
step(`/openapi.json has ${operations.length} operations`);

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-quic',
  ],
});
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });

  // Every request the page makes must go to the aipbx server; anything else is recorded and refused,
  // so a forgotten CDN link fails here instead of hanging without internet.
  const foreign = [];
  let requests = 0;
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === 'data:' || url.protocol === 'blob:') return route.continue();
    if (url.hostname === '127.0.0.1' && url.port === base.port) {
      requests += 1;
      return route.continue();
    }
    foreign.push(url.href);
    return route.abort('blockedbyclient');
  });

  page = await context.newPage();
  const consoleErrors = [];
  let expected409 = 0;  // Chromium logs every 4xx answer as a console error; the 409s this test asks for are not
  page.on('console', (msg) => {
    if (msg.type() === 'error') consoleErrors.push(msg.text());
  });
  page.on('pageerror', (err) => consoleErrors.push(`uncaught: ${err.message}`));
  page.on('requestfailed', (req) => {
    const url = new URL(req.url());
    if (url.hostname === '127.0.0.1') consoleErrors.push(`request failed: ${req.url()} ${req.failure()?.errorText}`);
  });

  const docsUrl = new URL('/docs', base).href;
  const response = await page.goto(docsUrl, { waitUntil: 'load', timeout });
  if (response?.status() !== 200) fail(`GET /docs answered ${response?.status()}`);
  step(`opened ${docsUrl}`);

  // Swagger UI fetches /openapi.json and renders one .opblock per operation.
  try {
    await page.waitForFunction((n) => document.querySelectorAll('.opblock').length === n, operations.length, {
      timeout,
    });
  } catch {
    fail(`expected ${operations.length} .opblock elements, found ${await page.locator('.opblock').count()}`);
  }
  for (const op of operations) {
    // With deepLinking, each block's id is operations-<tag>-<operationId>.
    const block = page.locator(`[id="operations-${op.tag}-${op.id}"]`);
    if ((await block.count()) !== 1) fail(`no rendered block for ${op.method.toUpperCase()} ${op.path} (${op.id})`);
  }
  // Each tag of the document has its section, holding exactly the operations of that tag.
  for (const tag of spec.tags ?? []) {
    const expected = operations.filter((o) => o.tag === tag.name).length;
    const header = page.locator(`[id="operations-tag-${tag.name}"]`);
    if ((await header.count()) !== 1) {
      fail(`no section for tag "${tag.name}"`);
      continue;
    }
    const rendered = await page.locator('.opblock-tag-section').filter({ has: header }).locator('.opblock').count();
    if (rendered !== expected) fail(`tag "${tag.name}" shows ${rendered} operations, the document has ${expected}`);
  }
  const jobsTag = spec.tags?.find((t) => t.name === 'jobs');
  if (!jobsTag) fail('the document has no "jobs" tag');
  const jobsHeader = ((await page.locator('[id="operations-tag-jobs"]').first().textContent()) ?? '').replace(/\s+/g, ' ');
  if (!jobsHeader.includes('Retry policy')) fail(`the jobs section does not show its description: "${jobsHeader.slice(0, 120)}"`);
  // The calls section draws the lifecycle: a code block naming every call state.
  const states = spec.components?.schemas?.CallState?.enum ?? [];
  const blocks = await page.locator('[id="operations-tag-calls"] pre').allTextContents();
  if (!states.length || !blocks.some((t) => states.every((st) => t.includes(st)))) {
    fail(`the calls section shows no diagram naming ${states.join(', ')}: ${JSON.stringify(blocks).slice(0, 200)}`);
  }
  step(`tags: ${(spec.tags ?? []).map((t) => `${t.name} (${operations.filter((o) => o.tag === t.name).length})`).join(', ')}`);

  const title = (await page.locator('.info .title').first().textContent())?.trim();
  step(`rendered "${title}" with ${await page.locator('.opblock').count()} operations`);
  if (!title?.startsWith(spec.info.title)) fail(`title is "${title}", expected "${spec.info.title}"`);
  if ((await page.locator('.errors-wrapper').count()) > 0) {
    fail(`Swagger UI shows errors: ${await page.locator('.errors-wrapper').first().textContent()}`);
  }

  // Expand POST /v1/call/stream/{call_id}, "Try it out", fill call_id, execute with the example body.
  const block = page.locator(`[id="operations-${ingest.tag}-${ingest.id}"]`);
  await block.locator('.opblock-summary-control').click();
  await block.locator('button.try-out__btn').click({ timeout });
  await block.locator('tr[data-param-name="call_id"] input').fill(callId);
  await block.locator('tr[data-param-name="X-Request-ID"] input').fill(requestId);
  const body = await block.locator('textarea.body-param__text').inputValue();
  let sent;
  try {
    sent = JSON.parse(body);
  } catch {
    fail(`the request body editor does not hold JSON: ${body}`);
  }
  step(`trying it out with body ${JSON.stringify(sent)}`);
  const answered = page.waitForResponse(
    (r) => r.request().method() === 'POST' && new URL(r.url()).pathname.startsWith('/v1/call/stream/'),
    { timeout },
  );
  await block.locator('button.execute').click();
  const posted = await answered;
  if (posted.status() !== 202) fail(`the POST was answered ${posted.status()}, expected 202`);
  if (new URL(posted.url()).pathname !== `/v1/call/stream/${encodeURIComponent(callId)}`) {
    fail(`Swagger UI posted to ${posted.url()}`);
  }
  if (posted.headers()['x-request-id'] !== requestId) fail(`X-Request-ID came back as ${posted.headers()['x-request-id']}`);

  // The answer as Swagger UI shows it.
  const status = block.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor({ timeout });
  const shown = (await status.textContent())?.trim();
  if (shown !== '202') fail(`Swagger UI shows status "${shown}", expected 202`);
  const shownBody = (await block.locator('.live-responses-table .response-col_description pre').first().textContent()) ?? '';
  if (!shownBody.includes('Packet accepted')) fail(`Swagger UI shows body ${shownBody}`);
  step(`Swagger UI shows ${shown} ${shownBody.replace(/\s+/g, ' ').slice(0, 120)}`);

  // And the packet is stored: read it back through the API.
  const stored = await (await fetch(new URL(`/v1/calls/${encodeURIComponent(callId)}/packets`, base))).json();
  const packet = stored.packets?.find((p) => p.sequence === sent?.sequence);
  if (!packet || packet.data !== sent?.data || packet.timestamp !== sent?.timestamp) {
    fail(`the packet is not stored as sent: ${JSON.stringify(stored)}`);
  } else {
    step(`stored: ${JSON.stringify(packet)}`);
  }

  // The packet queued an AI job in the same transaction: "Try it out" on GET /v1/jobs filtered by the call.
  const listJobs = operations.find((o) => o.id === 'listJobs');
  if (!listJobs) {
    fail('/openapi.json has no listJobs operation');
  } else {
    const jobsBlock = page.locator(`[id="operations-${listJobs.tag}-${listJobs.id}"]`);
    await jobsBlock.locator('.opblock-summary-control').click();
    await jobsBlock.locator('button.try-out__btn').click({ timeout });
    await jobsBlock.locator('tr[data-param-name="call_id"] input').fill(callId);
    const listed = page.waitForResponse(
      (r) => r.request().method() === 'GET' && new URL(r.url()).pathname === '/v1/jobs',
      { timeout },
    );
    await jobsBlock.locator('button.execute').click();
    const jobsResponse = await listed;
    if (jobsResponse.status() !== 200) fail(`GET /v1/jobs was answered ${jobsResponse.status()}, expected 200`);
    const jobsQuery = new URL(jobsResponse.url()).searchParams;
    if (jobsQuery.get('call_id') !== callId) fail(`Swagger UI asked for ${jobsResponse.url()}`);
    const jobsShown = jobsBlock.locator('.live-responses-table .response .response-col_status').first();
    await jobsShown.waitFor({ timeout });
    const jobsBody = (await jobsBlock.locator('.live-responses-table .response-col_description pre').first().textContent()) ?? '';
    let page1;
    try {
      page1 = JSON.parse(jobsBody);
    } catch {
      fail(`Swagger UI shows a jobs body that is not JSON: ${jobsBody.slice(0, 200)}`);
    }
    const job = page1?.jobs?.find((j) => j.call_id === callId && j.first_sequence <= sent?.sequence && sent?.sequence <= j.last_sequence);
    if (!job) fail(`no job covers the stored packet: ${jobsBody.slice(0, 300)}`);
    else step(`Swagger UI lists job ${job.id} (${job.state}) for sequence ${sent?.sequence}`);
    await jobsBlock.locator('.opblock-summary-control').click();  // collapse it again for the screenshot
  }

  // End the call from the page: 200 with the ended call, and 409 invalid_transition when executed again.
  const endCall = operations.find((o) => o.id === 'endCall');
  if (!endCall) {
    fail('/openapi.json has no endCall operation');
  } else {
    const endBlock = page.locator(`[id="operations-${endCall.tag}-${endCall.id}"]`);
    await endBlock.locator('.opblock-summary-control').click();
    await endBlock.locator('button.try-out__btn').click({ timeout });
    await endBlock.locator('tr[data-param-name="call_id"] input').fill(callId);
    const endPath = `/v1/calls/${encodeURIComponent(callId)}/end`;
    const execute = async () => {
      const answered = page.waitForResponse(
        (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === endPath,
        { timeout },
      );
      await endBlock.locator('button.execute').click();
      return answered;
    };
    const first = await execute();
    if (first.status() !== 200) fail(`POST ${endPath} was answered ${first.status()}, expected 200`);
    await endBlock.locator('.live-responses-table .response .response-col_status', { hasText: '200' }).first().waitFor({ timeout });
    const endText = (await endBlock.locator('.live-responses-table .response-col_description pre').first().textContent()) ?? '';
    let ended;
    try {
      ended = JSON.parse(endText);
    } catch {
      fail(`Swagger UI shows an end body that is not JSON: ${endText.slice(0, 200)}`);
    }
    if (!['PROCESSING_AI', 'COMPLETED', 'FAILED'].includes(ended?.state) || ended?.end_reason !== 'ended by request') {
      fail(`the ended call as shown: ${endText.slice(0, 300)}`);
    } else {
      step(`Swagger UI ended ${callId}: 200 ${ended.state}, ${ended.transitions?.length} transitions`);
    }
    expected409 += 1;
    const second = await execute();
    if (second.status() !== 409) fail(`a second end was answered ${second.status()}, expected 409`);
    await endBlock.locator('.live-responses-table .response .response-col_status', { hasText: '409' }).first().waitFor({ timeout });
    const againText = (await endBlock.locator('.live-responses-table .response-col_description pre').first().textContent()) ?? '';
    if (!againText.includes('invalid_transition')) fail(`a second end shows ${againText.slice(0, 200)}`);
    else step('Swagger UI shows 409 invalid_transition for a second end');
    await endBlock.locator('.opblock-summary-control').click();
  }

  await block.scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshotPath, fullPage: true });
  step(`screenshot: ${screenshotPath}`);

  if (foreign.length) fail(`requests left 127.0.0.1:${base.port}: ${foreign.join(', ')}`);
  for (; expected409 > 0; --expected409) {
    const i = consoleErrors.findIndex((e) => e.includes('the server responded with a status of 409'));
    if (i >= 0) consoleErrors.splice(i, 1);
  }
  if (consoleErrors.length) fail(`console errors:\n  ${consoleErrors.join('\n  ')}`);
  step(`${requests} requests to 127.0.0.1:${base.port}, ${foreign.length} elsewhere`);
} catch (err) {
  fail(err.message);
  // A picture of what went wrong.
  await page?.screenshot({ path: screenshotPath, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}

if (failures.length) {
  console.error(`${failures.length} check(s) failed`);
  process.exit(1);
}
console.log('PASS: /docs renders every operation under its tag offline, "Try it out" stores a packet, lists its job and ends the call');
