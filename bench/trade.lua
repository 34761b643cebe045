-- wrk script: POST /api/casino/trade as a random player on a random market.
--
--   BENCH_TOKENS=tokens.txt BENCH_MARKETS=markets.txt wrk -s bench/trade.lua ... URL
--
-- Each request: a random session token (player) from BENCH_TOKENS, a random market from
-- BENCH_MARKETS (one line = the hot-market scenario), a random outcome, a $1 buy at mid 50.
-- done() prints one line "BENCH_RESULT {json}" with the counts, the status codes seen and
-- the latency percentiles (microseconds), for bench/run.py to parse. With BENCH_GET=1 it
-- sends plain GETs of BENCH_PATH instead (the framework baseline, /healthz).

local function lines(path)
  local t = {}
  local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in f:lines() do
    if #line > 0 then t[#t + 1] = line end
  end
  f:close()
  return t
end

local tokens = lines(os.getenv("BENCH_TOKENS"))
local markets = lines(os.getenv("BENCH_MARKETS"))
local outcomes = { "yes", "no" }
local path = os.getenv("BENCH_PATH") or "/api/casino/trade"
local plain_get = os.getenv("BENCH_GET") == "1"  -- GET BENCH_PATH instead (the /healthz baseline)

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + (id or 0) * 7919)
  statuses = {}
end

function request()
  if plain_get then return wrk.format("GET", path) end
  local token = tokens[math.random(#tokens)]
  local market = markets[math.random(#markets)]
  local outcome = outcomes[math.random(2)]
  local body = '{"marketId":"' .. market .. '","side":"buy","outcome":"' .. outcome .. '","amount":1.00,"midPrice":50}'
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses") or {}
    for code, n in pairs(s) do merged[code] = (merged[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(merged) do parts[#parts + 1] = string.format('"%s":%d', code, n) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"statuses":{%s},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ","),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
