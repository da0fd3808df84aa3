-- ingressd.balancer: each worker's view of the backend set, refreshed per request, and the
-- balancer_by_lua entry point.
--
-- Data flow:
--   rewrite()  (every request; nothing to do when $proxy_upstream_name is unset, "" or "-")
--     -> one shm get of "version"; equal to this worker's version -> nothing else (hot path)
--     -> else sync(): apply store.changes(local, shm) (re-decode only the named backends), or a
--        full load (worker start, full replace, too far behind); unchanged JSON text -> kept as is
--     -> unknown backend or zero endpoints -> 503
--   balance()  (balancer_by_lua, each try)
--     -> entry.impl:balance(tried) -> set_current_peer -> set_more_tries(1) while tries remain
--
-- Algorithms are looked up per backend by its "load-balance" key in IMPLEMENTATIONS (only
-- round_robin now); each instance keeps its own state across updates through sync().
--
-- Hot path (nothing changed, first try): no JSON decode, no table, no string concatenation, no
-- ngx.ctx. Retries are detected with get_last_failure(); the peers already tried are read
-- from $upstream_addr only on that (rare) path.

local cjson = require("cjson.safe")
local ngx_balancer = require("ngx.balancer")
local store = require("ingressd.store")
local backends_mod = require("ingressd.backends")

local ngx = ngx
local var = ngx.var
local ngx_log, ngx_exit = ngx.log, ngx.exit
local ERR, WARN, INFO, NGX_ERROR = ngx.ERR, ngx.WARN, ngx.INFO, ngx.ERROR
local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring
local find, gmatch, sub = string.find, string.gmatch, string.sub
local decode = cjson.decode
local set_current_peer = ngx_balancer.set_current_peer
local set_more_tries = ngx_balancer.set_more_tries
local get_last_failure = ngx_balancer.get_last_failure
local port_number = backends_mod.port_number

local _M = {}

_M.DEFAULT_ALGORITHM = "round_robin"
_M.IMPLEMENTATIONS = {
    round_robin = require("ingressd.balancer.round_robin"),
}
_M.MAX_TRIES = 3 -- must match proxy_next_upstream_tries in nginx.conf

local IMPLEMENTATIONS = _M.IMPLEMENTATIONS

-- ----------------------------------------------------------------------------- worker view

-- A view: {dict, version, backends = {name -> entry}, stats}. An entry:
--   {name, raw (JSON text), backend (decoded), endpoints, n, algorithm, impl}
function _M.new_view(dict)
    return {
        dict = dict,
        version = 0,
        backends = {},
        stats = { full_loads = 0, incremental = 0, decoded = 0 },
    }
end

local function endpoint_key(address, port)
    if find(address, ":", 1, true) then
        return "[" .. address .. "]:" .. port
    end
    return address .. ":" .. port
end

-- Build the entry for backend `name` from its JSON text; `old` (may be nil) is the previous
-- entry: returned unchanged when the text is the same, its algorithm instance reused otherwise.
local function build(view, name, raw, old)
    if old ~= nil and old.raw == raw then
        return old
    end
    view.stats.decoded = view.stats.decoded + 1
    local backend = decode(raw)
    if type(backend) ~= "table" then
        ngx_log(ERR, "ingressd: cannot decode backend ", name, " from the shared dict")
        return old
    end
    local endpoints, n = {}, 0
    local eps = backend.endpoints
    if type(eps) == "table" then
        for _, ep in ipairs(eps) do
            local port = type(ep) == "table" and port_number(ep.port)
            if port and type(ep.address) == "string" then
                n = n + 1
                endpoints[n] = { address = ep.address, port = port,
                                 key = endpoint_key(ep.address, port) }
            end
        end
    end
    local algorithm = backend["load-balance"]
    if type(algorithm) ~= "string" or IMPLEMENTATIONS[algorithm] == nil then
        if algorithm ~= nil and algorithm ~= "" then
            ngx_log(WARN, "ingressd: backend ", name, ": load-balance \"", tostring(algorithm),
                    "\" is not implemented, using ", _M.DEFAULT_ALGORITHM)
        end
        algorithm = _M.DEFAULT_ALGORITHM
    end
    local entry = { name = name, raw = raw, backend = backend, endpoints = endpoints, n = n,
                    algorithm = algorithm }
    if old ~= nil and old.algorithm == algorithm then
        entry.impl = old.impl
        entry.impl:sync(entry)
    else
        entry.impl = IMPLEMENTATIONS[algorithm].new(entry)
    end
    return entry
end

local function full_load(view, version)
    local dict = view.dict
    local old = view.backends
    local new = {}
    for _, name in ipairs(store.names(dict)) do
        local raw = store.get(dict, name)
        if raw ~= nil then
            new[name] = build(view, name, raw, old[name])
        end
    end
    view.backends = new
    view.version = version
    view.stats.full_loads = view.stats.full_loads + 1
end

-- Bring `view` to the shared dict's version. `version` is the shm version if already read.
function _M.sync(view, version)
    local dict = view.dict
    if version == nil then
        version = store.version(dict)
    end
    local from = view.version
    if version == from then
        return
    end
    local changed = store.changes(dict, from, version)
    if changed == nil then
        return full_load(view, version)
    end
    local backends = view.backends
    for name in pairs(changed) do
        local raw = store.get(dict, name)
        if raw == nil then
            backends[name] = nil
        else
            backends[name] = build(view, name, raw, backends[name])
        end
    end
    view.version = version
    view.stats.incremental = view.stats.incremental + 1
end

local sync = _M.sync

-- ----------------------------------------------------------------------------- retries

-- Peers already tried by this request, from $upstream_addr as seen in the balancer phase on a
-- retry, e.g. "127.0.1.1:80, 127.0.1.2:80 : " (the trailing " : " is the try in progress;
-- earlier " : " separate earlier upstream groups of the same request, e.g. after error_page).
-- Returns a set {["addr:port"] = true} and how many tries were made in the current group.
function _M.parse_tried(upstream_addr)
    local tried, count = {}, 0
    if type(upstream_addr) ~= "string" then
        return tried, 0
    end
    local s = upstream_addr
    -- drop the trailing separator(s) of the try in progress
    local last = #s
    while last > 0 do
        local c = sub(s, last, last)
        if c == " " or c == ":" then
            last = last - 1
        else
            break
        end
    end
    s = sub(s, 1, last)
    -- keep only the current group: what follows the last " : "
    local from = 1
    while true do
        local a, b = find(s, " : ", from, true)
        if a == nil then
            break
        end
        from = b + 1
    end
    s = sub(s, from)
    for peer in gmatch(s, "[^,%s]+") do
        count = count + 1
        tried[peer] = true
    end
    return tried, count
end

local parse_tried = _M.parse_tried

-- ----------------------------------------------------------------------------- nginx phases

local view = nil -- this worker's view of ngx.shared.ingressd_configuration

local function worker_view()
    if view == nil then
        local dict = ngx.shared.ingressd_configuration
        if dict == nil then
            error("lua_shared_dict ingressd_configuration is not defined in nginx.conf")
        end
        view = _M.new_view(dict)
    end
    return view
end

_M.worker_view = worker_view
worker_view()

local dict = view.dict
local VERSION_KEY = store.VERSION_KEY
local shm_get = dict.get

function _M.init_worker()
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
    local ok, err = pcall(sync, view)
    if not ok then
        ngx_log(ERR, "ingressd: initial load of backends failed: ", tostring(err))
    end
end

function _M.rewrite()
    local name = var.proxy_upstream_name
    if name == nil or name == "" or name == "-" then
        return
    end
    local v = shm_get(dict, VERSION_KEY) or 0
    if v ~= view.version then
        local ok, err = pcall(sync, view, v)
        if not ok then
            ngx_log(ERR, "ingressd: failed to refresh backends: ", tostring(err))
        end
    end
    local entry = view.backends[name]
    if entry == nil or entry.n == 0 then
        if entry == nil then
            ngx_log(INFO, "ingressd: unknown backend ", name)
        end
        return ngx_exit(503)
    end
end

local function balance()
    local name = var.proxy_upstream_name
    local entry = name and view.backends[name]
    if not entry then
        ngx_log(ERR, "ingressd: no backend \"", tostring(name), "\" in this worker")
        return ngx_exit(NGX_ERROR)
    end
    local tried, try = nil, 1
    if get_last_failure() ~= nil then
        local count
        tried, count = parse_tried(var.upstream_addr)
        try = count + 1
    end
    local ep = entry.impl:balance(tried)
    if ep == nil then
        ngx_log(ERR, "ingressd: backend ", name, " has no endpoints")
        return ngx_exit(NGX_ERROR)
    end
    local ok, err = set_current_peer(ep.address, ep.port)
    if not ok then
        ngx_log(ERR, "ingressd: set_current_peer(", ep.key, ") failed: ", tostring(err))
        return ngx_exit(NGX_ERROR)
    end
    if try < _M.MAX_TRIES then
        ok, err = set_more_tries(1)
        if not ok then
            ngx_log(ERR, "ingressd: set_more_tries failed: ", tostring(err))
        end
    end
end

function _M.balance()
    local ok, err = pcall(balance)
    if not ok then
        ngx_log(ERR, "ingressd: balancer error: ", tostring(err))
        return ngx_exit(NGX_ERROR)
    end
end

return _M
