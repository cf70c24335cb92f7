-- The OpenResty way of doing the module's job, for the benchmark only
-- (bench/nginx/openresty.conf.in).  Same contract as
-- ngx_http_phantombuster_module: POST only, ?secret= compared in constant
-- time, the body validated like common/pb_payload.c (containerId and
-- agentId: a non-negative integer or a non-empty [A-Za-z0-9_.:-] string of
-- at most 64 bytes; exitCode an integer; exitMessage a string), the
-- envelope of common/pb_envelope.c with the body embedded verbatim, and the
-- module's Redis commands (MULTI, SET <seen> <id> PX <window> NX, LPUSH,
-- EXEC; a duplicate's envelope taken back with LREM), pipelined over
-- lua-resty-redis's keepalive pool, one request at a time: the module sends
-- the same commands for a whole batch of requests.  202 once Redis
-- confirmed.

local cjson = require "cjson.safe"
local redis = require "resty.redis"
local bit = require "bit"

local ngx = ngx
local byte, find, format, floor = string.byte, string.find, string.format, math.floor
local type = type

local _M = {}
local cfg


function _M.configure(c)
    cfg = c
    cfg.dedupe = tostring(c.dedupe_ms or 0)
    cfg.seen_prefix = c.queue .. ":seen:"
    cfg.env_queue = cjson.encode(c.queue)
end

local function reply(status, body)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.print(body)
    return ngx.exit(status)
end

local function secret_ok(given)
    local want = cfg.secret
    if type(given) ~= "string" or #given ~= #want then
        return false
    end
    local diff = 0
    for i = 1, #want do
        diff = bit.bor(diff, bit.bxor(byte(given, i), byte(want, i)))
    end
    return diff == 0
end

local function id_of(v)
    local t = type(v)
    if t == "number" then
        if v < 0 or v ~= floor(v) or v >= 9223372036854775808 then
            return nil
        end
        return format("%d", v)
    elseif t == "string" then
        if #v == 0 or #v > 64 or find(v, "[^%w_.:%-]") then
            return nil
        end
        return v
    end
    return nil
end

function _M.handle()
    if ngx.req.get_method() ~= "POST" then
        return reply(405, '{"error":"method not allowed"}')
    end
    if not secret_ok(ngx.var.arg_secret) then
        return reply(401, '{"error":"bad secret"}')
    end

    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if not body then
        return reply(413, '{"error":"body too large"}')
    end

    local p = cjson.decode(body)
    if type(p) ~= "table" then
        return reply(400, '{"error":"payload must be a json object"}')
    end
    local container_id = id_of(p.containerId)
    if not container_id then
        return reply(400, '{"error":"bad containerId"}')
    end
    if not id_of(p.agentId) then
        return reply(400, '{"error":"bad agentId"}')
    end
    local ec = p.exitCode
    if type(ec) ~= "number" or ec ~= floor(ec) then
        return reply(400, '{"error":"exitCode must be an integer"}')
    end
    if type(p.exitMessage) ~= "string" then
        return reply(400, '{"error":"exitMessage must be a string"}')
    end

    local id = ngx.var.request_id
    local envelope = '{"id":"' .. id .. '","received_at":' .. format("%d", ngx.now() * 1000)
        .. ',"queue":' .. cfg.env_queue .. ',"payload":' .. body .. '}'

    local red = redis:new()
    red:set_timeout(cfg.timeout_ms)
    local ok, err = red:connect(cfg.redis_host, cfg.redis_port)
    if not ok then
        ngx.log(ngx.ERR, "redis connect: ", err)
        return reply(503, '{"error":"queue unavailable"}')
    end

    local seen = cfg.seen_prefix .. container_id
    local res
    red:init_pipeline()
    red:multi()
    if cfg.dedupe ~= "0" then
        red:set(seen, id, "PX", cfg.dedupe, "NX")
    end
    red:lpush(cfg.queue, envelope)
    red:exec()
    res, err = red:commit_pipeline()
    local done = res and res[#res]
    if type(done) ~= "table" or type(done[#done]) ~= "number" then
        ngx.log(ngx.ERR, "redis push: ", err or (type(done) == "table" and done[#done][2]) or "no reply")
        red:close()
        return reply(503, '{"error":"queue unavailable"}')
    end

    if cfg.dedupe ~= "0" and done[1] == ngx.null then
        res, err = red:lrem(cfg.queue, 1, envelope)
        if not res then
            ngx.log(ngx.ERR, "redis lrem: ", err)
            red:close()
            return reply(200, '{"status":"duplicate"}')
        end
        red:set_keepalive(60000, cfg.pool_size)
        return reply(200, '{"status":"duplicate"}')
    end
    red:set_keepalive(60000, cfg.pool_size)

    return reply(202, '{"status":"queued","id":"' .. id .. '"}')
end

return _M
