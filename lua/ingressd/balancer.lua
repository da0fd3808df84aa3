-- ingressd.balancer: each worker's view of the backend set, refreshed per request, and the
-- balancer_by_lua entry point.
--
-- Data flow:
--   rewrite()  (every request; nothing to do when $proxy_upstream_name is unset, "" or "-"),
--   or settle() from the router (--routing lua, a class whose block has no rewrite-phase
--   directives: its named location then runs no Lua before the content phase)
--     -> view:refresh() (ingressd.replica): one shm get of "version", equal to this worker's ->
--        nothing else (hot path); else re-decode the changed backends this worker uses (a
--        full replace or too far behind: every one, on its next use)
--     -> backend(): the entry, built from its JSON text on first use (lazy: a new worker
--        starts at once whatever the number of backends)
--     -> canary: a backend with "alternativeBackends" keeps a request whose affinity cookie
--        names it; else each alternative takes a request whose cookie names it or that its
--        "trafficShapingPolicy" matches (header, then cookie, then weight): the first one
--        replaces $proxy_upstream_name for this request (ingress-nginx's order)
--     -> unknown backend or zero endpoints -> the location's $ingressd_default_backend when it
--        has endpoints (default-backend annotation), else 503
--   balance()  (balancer_by_lua, each try)
--     -> entry.impl:balance(tried) -> set_current_peer -> set_more_tries(1) while tries remain
--        (proxy_next_upstream_tries caps them; MAX_TRIES bounds "0 = unlimited")
--   log()  (log_by_lua) -> impl:after_balance(peer, seconds) for algorithms that learn (ewma)
--
-- Algorithms: IMPLEMENTATIONS[name] where name is, as ingress-nginx decides it,
-- sticky_balanced / sticky_persistent (sessionAffinityConfig.name == "cookie"), else chash
-- (upstreamHashByConfig["upstream-hash-by"] set), else the backend's "load-balance"
-- (round_robin, ewma); each instance keeps its own state across updates through sync().
--
-- Hot path (nothing changed, first try): no JSON decode, no table, no string concatenation, no
-- ngx.ctx. Retries are detected with get_last_failure(); the peers already tried are read
-- from $upstream_addr only on that (rare) path.

local cjson = require("cjson.safe")
local ngx_balancer = require("ngx.balancer")
local store = require("ingressd.store")
local replica = require("ingressd.replica")
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
local BACKEND_PREFIX = store.BACKEND_PREFIX

local _M = {}

_M.DEFAULT_ALGORITHM = "round_robin"
local sticky = require("ingressd.balancer.sticky")

_M.IMPLEMENTATIONS = {
    round_robin = require("ingressd.balancer.round_robin"),
    ewma = require("ingressd.balancer.ewma"),
    chash = require("ingressd.balancer.chash"),
    sticky_balanced = { new = function(entry) return sticky.new(entry, "balanced") end },
    sticky_persistent = { new = function(entry) return sticky.new(entry, "persistent") end },
}
-- Upper bound of tries per request; nginx's proxy_next_upstream_tries (3 by default, the
-- proxy-next-upstream-tries annotation per location) is the real limit.
_M.MAX_TRIES = 100

local IMPLEMENTATIONS = _M.IMPLEMENTATIONS

-- ----------------------------------------------------------------------------- worker view

-- A view: an ingressd.replica of store.backends, lazy: backends = {name -> entry, or false
-- when not stored}, each built on first use (backend()), so that a worker starts at once
-- whatever the number of backends and holds only those it serves; previous = {name -> entry}
-- from before the last full load, reused by backend() when the text is unchanged (and their
-- algorithm instance when not). An entry:
--   {name, raw (JSON text), backend (decoded), endpoints, n, algorithm, impl}
local apply

function _M.new_view(dict)
    return replica.new(store.backends, dict, apply,
                       { backends = {}, previous = {}, lazy = true, stats = { decoded = 0 } })
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
    local algorithm = _M.algorithm_of(backend)
    if IMPLEMENTATIONS[algorithm] == nil then
        ngx_log(WARN, "ingressd: backend ", name, ": load-balance \"", tostring(algorithm),
                "\" is not implemented, using ", _M.DEFAULT_ALGORITHM)
        algorithm = _M.DEFAULT_ALGORITHM
    end
    local entry = { name = name, raw = raw, backend = backend, endpoints = endpoints, n = n,
                    algorithm = algorithm, alternatives = _M.alternatives_of(backend),
                    shaping = _M.shaping_of(backend) }
    if old ~= nil and old.algorithm == algorithm then
        entry.impl = old.impl
        entry.impl:sync(entry)
    else
        entry.impl = IMPLEMENTATIONS[algorithm].new(entry)
    end
    return entry
end

-- The IMPLEMENTATIONS key for a decoded backend (ingress-nginx's order of precedence).
function _M.algorithm_of(backend)
    local affinity = backend.sessionAffinityConfig
    if type(affinity) == "table" and affinity.name == "cookie" then
        if affinity.mode == "persistent" then
            return "sticky_persistent"
        end
        return "sticky_balanced"
    end
    local hash = backend.upstreamHashByConfig
    if type(hash) == "table" and type(hash["upstream-hash-by"]) == "string"
            and hash["upstream-hash-by"] ~= "" then
        return "chash"
    end
    local algorithm = backend["load-balance"]
    if type(algorithm) ~= "string" or algorithm == "" then
        return _M.DEFAULT_ALGORITHM
    end
    return algorithm
end

-- Names of the canary backends of a main backend, or nil when it has none (hot path: one
-- field test per request).
function _M.alternatives_of(backend)
    local alternatives = backend.alternativeBackends
    if type(alternatives) ~= "table" or #alternatives == 0 then
        return nil
    end
    local names = {}
    for i, alt in ipairs(alternatives) do
        if type(alt) == "string" then
            names[#names + 1] = alt
        end
        if i >= 16 then
            break
        end
    end
    return #names > 0 and names or nil
end

-- A canary backend's traffic shaping policy, pre-digested, or nil for a main backend.
function _M.shaping_of(backend)
    local p = backend.trafficShapingPolicy
    if backend.noServer ~= true or type(p) ~= "table" then
        return nil
    end
    local header = type(p.header) == "string" and p.header or ""
    local cookie = type(p.cookie) == "string" and p.cookie or ""
    local total = type(p.weightTotal) == "number" and p.weightTotal or 100
    if total < 1 then
        total = 100
    end
    return {
        weight = type(p.weight) == "number" and p.weight or 0,
        total = math.floor(total),
        header_var = header ~= "" and ("http_" .. header:lower():gsub("-", "_")) or nil,
        header_value = type(p.headerValue) == "string" and p.headerValue or "",
        header_pattern = type(p.headerPattern) == "string" and p.headerPattern or "",
        cookie_var = cookie ~= "" and ("cookie_" .. cookie) or nil,
    }
end

-- Whether the request's session cookie names this backend (cookie affinity only).
function _M.affinitized(entry)
    local impl = entry.impl
    return impl.is_affinitized ~= nil and impl:is_affinitized()
end

-- Whether the current request goes to the canary with policy `p` (ingress-nginx's
-- precedence: the header, then the cookie, then the weight). `random` is for the tests.
function _M.canary_matches(p, vars, random)
    if p.header_var then
        local value = vars[p.header_var]
        if value then
            if p.header_value ~= "" then
                if value == p.header_value then
                    return true
                end
            elseif p.header_pattern ~= "" then
                local from, _, err = ngx.re.find(value, p.header_pattern, "jo")
                if from then
                    return true
                end
                if err then
                    ngx_log(WARN, "ingressd: canary-by-header-pattern failed: ", err)
                    return false
                end
            elseif value == "always" then
                return true
            elseif value == "never" then
                return false
            end
        end
    end
    if p.cookie_var then
        local value = vars[p.cookie_var]
        if value == "always" then
            return true
        elseif value == "never" then
            return false
        end
    end
    return p.weight > 0 and (random or math.random)(p.total) <= p.weight
end

-- The entry of backend `name`, built from the shared dict on first use; nil when not stored.
-- The text is read outside the write sequence: each backend stands alone.
local function backend(view, name)
    local backends = view.backends
    local entry = backends[name]
    if entry ~= nil then
        return entry or nil
    end
    local raw = view.dict:get(BACKEND_PREFIX .. name)
    if raw == nil then
        backends[name] = false
        view.previous[name] = nil
        return nil
    end
    local previous = view.previous
    entry = build(view, name, raw, previous[name])
    previous[name] = nil
    backends[name] = entry or false
    return entry
end

_M.backend = backend

-- Apply a read of the backends (ingressd.replica). A full read (lazy: no texts) moves every
-- built entry to a new `previous`; a changed backend already built is rebuilt now (its
-- algorithm instance survives a change of endpoints), any other changed name is forgotten
-- until its next use.
apply = function(view, items, full)
    local backends, previous = view.backends, view.previous
    if full then
        -- Only what was built since the last full read is kept: a name no request asked for
        -- since then is dropped, so `previous` never outgrows the backends in use.
        previous = {}
        for name, entry in pairs(backends) do
            if entry then
                previous[name] = entry
            end
        end
        view.previous = previous
        backends = {}
        view.backends = backends
    end
    for name, raw in pairs(items) do
        local old = backends[name] or previous[name]
        previous[name] = nil
        if old and raw then
            backends[name] = build(view, name, raw, old) or false
        else
            backends[name] = nil
        end
    end
end

-- Bring `view` to the shared dict's version (whole writes only).
function _M.sync(view)
    return view:sync()
end

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

local view = _M.new_view(replica.shared_dict()) -- this worker's view

function _M.worker_view()
    return view
end

function _M.init_worker()
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
    view:load()
end

-- The rewrite step for backend `name` (non-empty), whose request already has
-- $proxy_upstream_name = name: an alternative or the default backend replaces it, or 503.
-- `fallback`: the default backend's name ("" for none), or nil to read it from
-- $ingressd_default_backend when needed.
local function settle(name, fallback)
    view:refresh()
    local entry = backend(view, name)
    if entry ~= nil and entry.alternatives ~= nil and not _M.affinitized(entry) then
        for _, alt_name in ipairs(entry.alternatives) do
            local alt = backend(view, alt_name)
            if alt ~= nil and alt.n > 0 and alt.shaping ~= nil
                    and (_M.affinitized(alt) or _M.canary_matches(alt.shaping, var)) then
                var.proxy_upstream_name = alt_name
                return
            end
        end
    end
    if entry == nil or entry.n == 0 then
        if entry == nil then
            ngx_log(INFO, "ingressd: unknown backend ", name)
        end
        if fallback == nil then
            fallback = var.ingressd_default_backend
        end
        if fallback ~= nil and fallback ~= "" then
            local other = backend(view, fallback)
            if other ~= nil and other.n > 0 then
                var.proxy_upstream_name = fallback
                return
            end
        end
        return ngx_exit(503)
    end
end

-- rewrite_by_lua of a proxying location (http level in --routing nginx).
function _M.rewrite()
    local name = var.proxy_upstream_name
    if name == nil or name == "" or name == "-" then
        return
    end
    return settle(name, nil)
end

-- The same step run by the router (ingressd.router) for a route whose class's named location
-- has no rewrite-phase directives (so none could run before it): the router has set
-- $proxy_upstream_name to `name` and hands over the route's default backend ("" for none).
_M.settle = settle

-- Last number of a "$upstream_*_time" value ("0.004, 0.012" after a retry), or nil ("-").
local function last_time(value)
    if type(value) ~= "string" then
        return nil
    end
    local last = value:match("([%d.]+)%s*$")
    return last and tonumber(last)
end

function _M.log()
    local name = var.proxy_upstream_name
    if name == nil or name == "" or name == "-" then
        return
    end
    local entry = backend(view, name)
    if entry == nil or entry.impl.after_balance == nil then
        return
    end
    local connect = last_time(var.upstream_connect_time)
    local header = last_time(var.upstream_header_time)
    local peer = var.upstream_addr
    if connect == nil or header == nil or type(peer) ~= "string" then
        return
    end
    peer = peer:match("([^,%s]+)%s*$")
    if peer then
        entry.impl:after_balance(peer, connect + header)
    end
end

local function balance()
    local name = var.proxy_upstream_name
    local entry = name and backend(view, name)
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
