-- ingest.lua: a wrk script that streams call audio packets to POST /v1/call/stream/{call_id}.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/ingest.lua http://127.0.0.1:8000 -- threads=2 [calls=128 prefix=run42]
--
-- Options (wrk arguments after `--`, or environment variables; arguments win):
--   calls=N    / INGEST_CALLS    calls the load is spread over (default 128)
--   threads=T  / INGEST_THREADS  wrk's -t value: lets the threads split the calls between them (see init)
--   prefix=S   / INGEST_PREFIX   call-id prefix (default: "b" + time + random, unique per run, so
--                                a second run on the same database starts new calls)
--   payload=N  / INGEST_PAYLOAD  length of `data` (default 160: one 20 ms G.711 frame)
--
-- Each wrk thread owns its own calls (call c belongs to thread c mod threads), and each thread's Lua
-- state numbers its calls' packets 1, 2, 3... in the order it generates them, so per-call sequences only
-- increase. A thread cycles over its calls, so two packets of one call are (calls / threads) requests
-- apart; they can only reach the server out of order if one request is overtaken by that many others.
-- `reordered` counts the 2xx whose "arrival" field (aipbx's, the seed has none) is not "in_order": a
-- gap, a late or a duplicate packet. It should be 0; anything else means the load itself was disordered.
--
-- done() prints a human summary and one machine-readable line starting with "INGEST_RESULT".

local counters = { "s2xx", "s3xx", "s4xx", "s5xx", "other", "reordered" }

-- Main state: one table per thread, so done() can read each thread's counters (wrk's threads are
-- separate Lua states; thread:get reads a global of that state after the run).
local threads = {}
local run_prefix = nil

local function option(args, name, env, default)
  for _, a in ipairs(args or {}) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if k == name then return v end
  end
  local e = os.getenv(env)
  if e ~= nil and e ~= "" then return e end
  return default
end

-- setup() runs in the main state, once per thread, just before that thread starts.
function setup(thread)
  if run_prefix == nil then
    math.randomseed(os.time())
    run_prefix = os.getenv("INGEST_PREFIX")
    if run_prefix == nil or run_prefix == "" then
      run_prefix = string.format("b%dr%04d", os.time(), math.random(0, 9999))
    end
  end
  thread:set("thread_index", #threads)
  thread:set("default_prefix", run_prefix)
  table.insert(threads, thread)
end

-- Per-thread state (globals of the thread's Lua state).
local my_calls = {}     -- call ids this thread owns
local next_seq = {}     -- per call: the next sequence to send
local paths = {}        -- per call: the request path
local payloads = {}     -- a few distinct frames, reused
local cursor = 0
local base_ts = 0

s2xx, s3xx, s4xx, s5xx, other, reordered = 0, 0, 0, 0, 0, 0
calls_owned = 0

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function frame(n, len)
  local t = {}
  local x = n * 2654435761 % 4294967296 + 1
  for i = 1, len do
    x = (x * 1103515245 + 12345) % 2147483648
    local k = math.floor(x / 65536) % 64 + 1
    t[i] = alphabet:sub(k, k)
  end
  return table.concat(t)
end

-- init() runs in each thread's state. wrk starts thread i before it runs setup() for thread i + 1 and
-- never tells the script its -t value, so the split needs threads=T (or INGEST_THREADS). Without it each
-- thread streams its own `calls` calls (ids carry the thread index), so nothing collides, and the total
-- printed by done() is calls x threads.
function init(args)
  local calls = tonumber(option(args, "calls", "INGEST_CALLS", "128"))
  local prefix = option(args, "prefix", "INGEST_PREFIX", default_prefix)
  local len = tonumber(option(args, "payload", "INGEST_PAYLOAD", "160"))
  local nthreads = tonumber(option(args, "threads", "INGEST_THREADS", ""))
  if nthreads == nil then
    prefix = string.format("%s-t%d", prefix, thread_index)
  end
  for c = 0, calls - 1 do
    if nthreads == nil or c % nthreads == thread_index then
      local id = string.format("%s-%05d", prefix, c)
      table.insert(my_calls, id)
      next_seq[id] = 1
      paths[id] = "/v1/call/stream/" .. id
    end
  end
  calls_owned = #my_calls
  prefix_used = prefix
  for i = 1, 16 do payloads[i] = frame(thread_index * 16 + i, len) end
  base_ts = os.time()
  wrk.headers["Content-Type"] = "application/json"
end

-- wrk calls request() once in thread 0's state before the run, to check the script (script_verify_request
-- in wrk's main()); that request is never sent, so it must not use up a sequence number.
local verified = false

function request()
  if not verified and thread_index == 0 then
    verified = true
    return wrk.format("GET", "/healthz")
  end
  if #my_calls == 0 then
    return wrk.format("GET", "/healthz")
  end
  cursor = cursor % #my_calls + 1
  local id = my_calls[cursor]
  local seq = next_seq[id]
  next_seq[id] = seq + 1
  local body = string.format('{"sequence":%d,"data":"%s","timestamp":%.2f}',
    seq, payloads[seq % 16 + 1], base_ts + seq * 0.02)
  return wrk.format("POST", paths[id], nil, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    s2xx = s2xx + 1
    -- aipbx says how the packet arrived; anything but in_order means a sequence was overtaken.
    if body and body:find('"arrival"', 1, true) and not body:find('"arrival":"in_order"', 1, true) then
      reordered = reordered + 1
    end
  elseif status < 400 then s3xx = s3xx + 1
  elseif status < 500 then s4xx = s4xx + 1
  elseif status < 600 then s5xx = s5xx + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local total = {}
  for _, name in ipairs(counters) do total[name] = 0 end
  local owned = 0
  local prefix = threads[1] and threads[1]:get("prefix_used") or run_prefix
  for _, t in ipairs(threads) do
    for _, name in ipairs(counters) do total[name] = total[name] + (tonumber(t:get(name)) or 0) end
    owned = owned + (tonumber(t:get("calls_owned")) or 0)
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  local non2xx = total.s3xx + total.s4xx + total.s5xx + total.other
  local function p(q) return latency:percentile(q) / 1000 end
  io.write("------------------------------------------------------------\n")
  io.write(string.format("calls %d, prefix %s\n", owned, prefix or "?"))
  io.write(string.format("responses %d in %.2fs: %.0f/s; 2xx %d (%.0f/s), non-2xx %d (3xx %d, 4xx %d, 5xx %d)\n",
    summary.requests, secs, summary.requests / secs, total.s2xx, total.s2xx / secs, non2xx,
    total.s3xx, total.s4xx, total.s5xx))
  io.write(string.format("latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
    p(50), p(90), p(99), p(99.9), latency.max / 1000, latency.mean / 1000))
  io.write(string.format("socket errors: connect %d, read %d, write %d, timeout %d; reordered packets %d\n",
    e.connect, e.read, e.write, e.timeout, total.reordered))
  io.write(string.format(
    "INGEST_RESULT responses=%d ok=%d non2xx=%d s4xx=%d s5xx=%d seconds=%.3f rps=%.1f ok_rps=%.1f " ..
    "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f connect_err=%d read_err=%d " ..
    "write_err=%d timeouts=%d reordered=%d calls=%d prefix=%s\n",
    summary.requests, total.s2xx, non2xx, total.s4xx, total.s5xx, secs, summary.requests / secs,
    total.s2xx / secs, p(50), p(90), p(99), p(99.9), latency.max / 1000, e.connect, e.read, e.write,
    e.timeout, total.reordered, owned, prefix or "?"))
end
