-- Owns the zero-downtime benchmark's load (run by wrk, one Lua state per thread): sends
-- the application's Host header (BENCH_HOST), paces each connection with BENCH_DELAY_MS
-- between its requests (0 = as fast as wrk can), counts responses per HTTP status, and
-- records in which second (epoch) each non-2xx/3xx response arrived. done() prints
-- machine-readable "BENCH ..." lines after wrk's own summary.

wrk.headers["Host"] = os.getenv("BENCH_HOST")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0

-- Per-thread counters, read by done() through thread:get.
statuses = {}
bad = {}

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status < 200 or status > 399 then
    local second = tostring(os.time()) .. " " .. key
    bad[second] = (bad[second] or 0) + 1
  end
end

function done(summary, latency, requests)
  local totals, bads = {}, {}
  for _, thread in ipairs(threads) do
    for k, v in pairs(thread:get("statuses") or {}) do totals[k] = (totals[k] or 0) + v end
    for k, v in pairs(thread:get("bad") or {}) do bads[k] = (bads[k] or 0) + v end
  end
  local e = summary.errors
  io.write(string.format("BENCH requests %d\n", summary.requests))
  io.write(string.format("BENCH duration_s %.3f\n", summary.duration / 1e6))
  io.write(string.format("BENCH errors connect %d read %d write %d status %d timeout %d\n",
    e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("BENCH latency_ms p50 %.2f p99 %.2f max %.2f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  for k, v in pairs(totals) do io.write(string.format("BENCH status %s %d\n", k, v)) end
  for k, v in pairs(bads) do io.write(string.format("BENCH bad %s %d\n", k, v)) end
end
