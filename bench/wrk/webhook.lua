-- wrk script for the webhook benchmark (bench/, scripts/bench/webhook.sh).
--
-- POSTs a ~600-byte PhantomBuster completion payload to the URL given on
-- the command line (its ?secret= included).  Every request carries a new
-- containerId, so that the dedupe marker never short-circuits a push.
--
--   wrk -t1 -c64 -d10s --latency -s bench/wrk/webhook.lua URL [-- BASE]
--
-- BASE (optional) is the first containerId; by default one derived from the
-- clock, so that runs against the same Redis do not collide.  Ids stay below
-- 2^53 (JSON numbers that every parser keeps exact) and 16 digits long (the
-- payload keeps its size).
--
-- done() prints one machine-readable line:
--   BENCH requests=N issued=N non2xx=N errors=N ... p50_us=N p99_us=N
-- requests: responses received; non2xx: responses with a status >= 400
-- (wrk counts every status > 399); issued: requests handed to the socket,
-- so issued - requests were still in flight when wrk stopped.

local threads = {}

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

local prefix, suffix, base
counter = 0                     -- global: read by done() via thread:get

-- The payload, built once.  Field set and order of PhantomBuster's
-- completion webhook; resultObject is a JSON-encoded string, as PhantomBuster
-- sends it.  Only containerId changes from one request to the next.
local function payload_parts()
   local result = '[{\\"profileUrl\\":\\"https://www.linkedin.com/in/bench-user-7f3a2c91/\\",'
      .. '\\"fullName\\":\\"Bench User\\",\\"headline\\":\\"Head of Growth at Example Ltd\\",'
      .. '\\"company\\":\\"Example Ltd\\",\\"location\\":\\"Lyon, Auvergne-Rhone-Alpes, France\\",'
      .. '\\"connectionDegree\\":\\"2nd\\",\\"mutualConnections\\":7,'
      .. '\\"timestamp\\":\\"2024-05-14T09:32:11.482Z\\"}]'
   local head = '{"agentId":4717388215573025,'
      .. '"agentName":"LinkedIn Profile Scraper - benchmark leads",'
      .. '"containerId":'
   local tail = ',"script":"LinkedIn Profile Scraper.js","scriptOrg":"phantombuster",'
      .. '"branch":"master","launchDuration":1843,"runDuration":127406,'
      .. '"exitCode":0,"exitMessage":"finished",'
      .. '"resultObject":"' .. result .. '"}'
   return head, tail
end

function init(args)
   prefix, suffix = payload_parts()
   local tid = wrk.thread:get("tid") or 0
   if args[1] then
      base = tonumber(args[1])
   else
      -- 7xxx xxxx xxxx xxxx: seconds of the clock in the middle digits,
      -- room for 10^9 requests per thread per run.
      base = 7000000000000000 + (os.time() % 100000) * 10000000000
   end
   base = base + tid * 1000000000
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["User-Agent"] = "PhantomBuster-bench"
end

function request()
   counter = counter + 1
   return wrk.format("POST", nil, nil,
                     prefix .. string.format("%d", base + counter) .. suffix)
end

function done(summary, latency, requests)
   local issued = 0
   for _, t in ipairs(threads) do
      issued = issued + (t:get("counter") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d issued=%d non2xx=%d connect=%d read=%d write=%d timeout=%d "
         .. "duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
      summary.requests, issued, e.status, e.connect, e.read, e.write, e.timeout,
      summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
