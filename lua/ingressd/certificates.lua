-- ingressd.certificates: TLS certificates by SNI without a reload. ssl_certificate_by_lua.
--
-- Control endpoint body (docs/routing.md "Certificates"):
--   {"certificates": {"<uid>": "<PEM: certificate chain and private key>"},
--    "servers": {"<host>": "<uid>" | null}}
-- stored in the shared dict as the collection store.certificates, one item per host and per
-- uid (item names "server:<host>" -> uid text, "pem:<uid>" -> PEM text), so that one write,
-- both maps, is one version. POST upserts (a null server is removed), PUT replaces both maps;
-- after either, uids no host names are removed (and never stored in the first place).
--
-- Data flow of a handshake (call()):
--   SNI (ngx.ssl.server_name(); none -> the default certificate)
--   -> view:refresh() (ingressd.replica): one shm get of "certificates:version"; differs ->
--      this worker's servers map {host -> uid} from the change log or a full load (whole
--      writes only)
--   -> uid of the exact host, else, unless the name is a host of the route table (routed
--      hosts without a certificate of their own get the default, as in --routing nginx), of
--      "*." + the name minus its first label, else nothing (the listener's default stays)
--   -> the parsed pair {cert, key} of that uid from this worker's LRU cache (CACHE_SIZE uids),
--      parsing the PEM from the shm on a miss (ngx.ssl.parse_pem_cert / parse_pem_priv_key)
--   -> clear_certs(), set_cert(), set_priv_key()
-- A uid whose PEM changes is dropped from the cache when the log names it; after a full load,
-- cached uids whose PEM text differs (or is gone) are dropped.
--
-- Key material lives in the shared dict and, parsed, in each worker's cache: never in a file,
-- never in an answer (GET lists hosts and uids only).

local cjson = require("cjson.safe")
local ssl = require("ngx.ssl")
local lrucache = require("resty.lrucache")
local store = require("ingressd.store")
local replica = require("ingressd.replica")
local router = require("ingressd.router")
local pausing = require("ingressd.pausing")
local routes = require("ingressd.routes")

local ngx = ngx
local ngx_log, ERR, WARN = ngx.log, ngx.ERR, ngx.WARN
local type, pairs, ipairs, next, tostring, pcall, format =
    type, pairs, ipairs, next, tostring, pcall, string.format
local find, sub, lower, byte = string.find, string.sub, string.lower, string.byte
local sort, concat = table.sort, table.concat
local decode, encode = cjson.decode, cjson.encode
local null = cjson.null

local CERTS = store.certificates

local _M = {}

_M.SERVER_PREFIX = "server:"
_M.PEM_PREFIX = "pem:"
_M.CACHE_SIZE = 1000 -- parsed uids kept per worker (least recently used evicted)
_M.MAX_UID_LENGTH = 256

local SERVER_PREFIX, PEM_PREFIX = _M.SERVER_PREFIX, _M.PEM_PREFIX
local SERVER_PREFIX_LEN, PEM_PREFIX_LEN = #SERVER_PREFIX, #PEM_PREFIX

-- ----------------------------------------------------------------------------- parse

local show = routes.show

-- {cert = cdata, key = cdata} parsed from a PEM holding the chain and the key, or nil, message.
function _M.parse_pem(pem)
    local cert, err = ssl.parse_pem_cert(pem)
    if cert == nil then
        return nil, "no certificate that parses: " .. tostring(err)
    end
    local key
    key, err = ssl.parse_pem_priv_key(pem)
    if key == nil then
        return nil, "no private key that parses: " .. tostring(err)
    end
    return { cert = cert, key = key }
end

local function valid_uid(uid)
    return type(uid) == "string" and uid ~= "" and #uid <= _M.MAX_UID_LENGTH
        and find(uid, "^[%w._:/-]+$") ~= nil
end

local function is_object(v)
    return type(v) == "table" and (next(v) == nil or type(next(v)) == "string")
end

-- Parse and check a request body. Every PEM is parsed (a failure names its uid).
-- Returns {certificates = {uid -> pem}, servers = {host -> uid | false}}, or nil and a message.
-- `replace` (PUT): every uid a server names must be in the body; nulls are not allowed.
function _M.parse(body, replace)
    local data = decode(body or "")
    if type(data) ~= "table" or (next(data) ~= nil and not is_object(data)) then
        return nil, 'body must be a JSON object {"certificates": {...}, "servers": {...}}'
    end
    for key in pairs(data) do
        if key ~= "certificates" and key ~= "servers" then
            return nil, format('unknown key %s: the body has "certificates" and "servers"',
                               show(key))
        end
    end
    local certs, servers = data.certificates, data.servers
    if certs == nil or certs == null then
        certs = {}
    end
    if servers == nil or servers == null then
        servers = {}
    end
    if not is_object(certs) then
        return nil, '"certificates" must be an object {uid: PEM}'
    end
    if not is_object(servers) then
        return nil, '"servers" must be an object {host: uid}'
    end
    local uids = {}
    for uid in pairs(certs) do
        uids[#uids + 1] = uid
    end
    sort(uids) -- the same error first whatever the hash order
    local pause = pausing.pauser() -- parsing keys takes a while: let other requests run
    for _, uid in ipairs(uids) do
        pause()
        if not valid_uid(uid) then
            return nil, format("certificates[%s]: a uid is 1 to %d characters of letters, "
                               .. "digits and ._:/-", show(uid), _M.MAX_UID_LENGTH)
        end
        local pem = certs[uid]
        if type(pem) ~= "string" then
            return nil, format("certificates[%s] must be a PEM string", show(uid))
        end
        local pair, err = _M.parse_pem(pem)
        if pair == nil then
            return nil, format("certificates[%s]: %s", show(uid), err)
        end
    end
    local hosts = {}
    for host in pairs(servers) do
        hosts[#hosts + 1] = host
    end
    sort(hosts)
    local out = {}
    for _, host in ipairs(hosts) do
        local uid = servers[host]
        if not routes.host_kind(host) then
            return nil, format("servers[%s]: a host is a lower-case DNS name or a one-label "
                               .. "wildcard *.name", show(host))
        end
        if uid == null and not replace then
            out[host] = false
        elseif not valid_uid(uid) then
            return nil, format("servers[%s]: %s is not a certificate uid%s", show(host),
                               show(uid), replace and "" or " (or null to remove the host)")
        elseif replace and certs[uid] == nil then
            return nil, format("servers[%s]: certificate %s is not in the body",
                               show(host), show(uid))
        else
            out[host] = uid
        end
    end
    return { certificates = certs, servers = out, hosts = hosts }
end

-- ----------------------------------------------------------------------------- store

-- The stored servers map {host -> uid} and the set of stored uids {uid -> true}.
function _M.stored(dict)
    local servers, uids = {}, {}
    for _, name in ipairs(CERTS:all_names(dict)) do
        if sub(name, 1, SERVER_PREFIX_LEN) == SERVER_PREFIX then
            local uid = CERTS:get(dict, name)
            if uid ~= nil then
                servers[sub(name, SERVER_PREFIX_LEN + 1)] = uid
            end
        elseif sub(name, 1, PEM_PREFIX_LEN) == PEM_PREFIX then
            uids[sub(name, PEM_PREFIX_LEN + 1)] = true
        end
    end
    return servers, uids
end

-- Store a parsed body. mode: "upsert" (POST) or "replace" (PUT).
-- Returns version, changed items; or nil, message, status.
function _M.write(dict, mode, parsed, opts)
    opts = opts or {}
    local function prepare(d)
        local servers, stored_uids = {}, {}
        if mode ~= "replace" then
            servers, stored_uids = _M.stored(d)
        end
        local servers_items, deletes = {}, {}
        for _, host in ipairs(parsed.hosts) do
            local uid = parsed.servers[host]
            if uid == false then
                servers[host] = nil
                deletes[#deletes + 1] = SERVER_PREFIX .. host
            else
                if parsed.certificates[uid] == nil and not stored_uids[uid] then
                    return nil, format('servers["%s"]: certificate "%s" is neither in the body '
                                       .. "nor stored", host, uid), 400
                end
                servers[host] = uid
                servers_items[#servers_items + 1] = { name = SERVER_PREFIX .. host, raw = uid }
            end
        end
        local referenced = {}
        for _, uid in pairs(servers) do
            referenced[uid] = true
        end
        local uids = {}
        for uid in pairs(parsed.certificates) do
            uids[#uids + 1] = uid
        end
        sort(uids)
        local items = {}
        for _, uid in ipairs(uids) do
            if referenced[uid] then
                items[#items + 1] = { name = PEM_PREFIX .. uid, raw = parsed.certificates[uid] }
            end
        end
        for _, item in ipairs(servers_items) do
            items[#items + 1] = item -- after the PEMs they name
        end
        for uid in pairs(stored_uids) do
            if not referenced[uid] then
                deletes[#deletes + 1] = PEM_PREFIX .. uid
            end
        end
        return items, deletes
    end
    return CERTS:write(dict, mode, nil, { prepare = prepare, log_size = opts.log_size,
                                          lock_timeout = opts.lock_timeout })
end

-- GET: {"version": V, "servers": {host: uid}, "certificates": [uid, ...]} (no key material).
function _M.list(dict)
    local servers, uids = _M.stored(dict)
    local hosts, parts = {}, {}
    for host in pairs(servers) do
        hosts[#hosts + 1] = host
    end
    sort(hosts)
    for i, host in ipairs(hosts) do
        parts[i] = encode(host) .. ":" .. encode(servers[host])
    end
    local list = {}
    for uid in pairs(uids) do
        list[#list + 1] = encode(uid)
    end
    sort(list)
    return format('{"version":%d,"servers":{%s},"certificates":[%s]}', CERTS:version(dict),
                  concat(parts, ","), concat(list, ","))
end

-- ----------------------------------------------------------------------------- worker view

-- A view: an ingressd.replica of store.certificates with servers = {host -> uid} and cache
-- (resty.lrucache of uid -> parsed pair).
local apply

function _M.new_view(dict, cache_size)
    local cache, err = lrucache.new(cache_size or _M.CACHE_SIZE)
    if cache == nil then
        error("cannot create the certificate cache: " .. tostring(err))
    end
    return replica.new(CERTS, dict, apply,
                       { servers = {}, cache = cache, stats = { parsed = 0 } })
end

-- Apply a read of the certificates (ingressd.replica). A uid whose PEM changed leaves the cache.
apply = function(view, items, full)
    local cache = view.cache
    if full then
        local servers = {}
        for name, raw in pairs(items) do
            if raw and sub(name, 1, SERVER_PREFIX_LEN) == SERVER_PREFIX then
                servers[sub(name, SERVER_PREFIX_LEN + 1)] = raw
            end
        end
        for _, uid in ipairs(cache:get_keys()) do
            local pair = cache:get(uid)
            if pair ~= nil and items[PEM_PREFIX .. uid] ~= pair.pem then
                cache:delete(uid)
            end
        end
        view.servers = servers
    else
        local servers = view.servers
        for name, raw in pairs(items) do
            if sub(name, 1, SERVER_PREFIX_LEN) == SERVER_PREFIX then
                servers[sub(name, SERVER_PREFIX_LEN + 1)] = raw or nil
            elseif sub(name, 1, PEM_PREFIX_LEN) == PEM_PREFIX then
                cache:delete(sub(name, PEM_PREFIX_LEN + 1))
            end
        end
    end
end

-- Bring `view` to the shared dict's certificates version (whole writes only).
function _M.sync(view)
    return view:sync()
end

local sync = _M.sync

-- The uid for a server name (lower case, no trailing dot), or nil. `routed(name)` (optional)
-- tells whether the name is a host of the route table (its own entry or an alias): such a
-- host without a certificate of its own keeps the default certificate, as a server block
-- without one does in --routing nginx and as in ingress-nginx (whose host -> certificate map
-- names every server, with an empty uid when it has none); only other names fall back to the
-- one-label wildcard's certificate.
function _M.find_uid(view, name, routed)
    local servers = view.servers
    local uid = servers[name]
    if uid ~= nil then
        return uid
    end
    local dot = find(name, ".", 1, true)
    if dot == nil then
        return nil
    end
    uid = servers["*" .. sub(name, dot)]
    if uid ~= nil and routed ~= nil and routed(name) then
        return nil
    end
    return uid
end

-- The parsed pair of `uid`, from the cache or parsed from the shm now; nil when not stored.
function _M.pair(view, uid)
    local pair = view.cache:get(uid)
    if pair ~= nil then
        return pair
    end
    local pem = CERTS:get(view.dict, PEM_PREFIX .. uid)
    if pem == nil then
        return nil, "not stored"
    end
    local err
    pair, err = _M.parse_pem(pem)
    if pair == nil then
        return nil, err
    end
    pair.pem = pem
    view.stats.parsed = view.stats.parsed + 1
    view.cache:set(uid, pair)
    return pair
end

-- ----------------------------------------------------------------------------- nginx phase

local view = _M.new_view(replica.shared_dict()) -- this worker's view

function _M.worker_view()
    return view
end

-- init_by_lua: the master reads the servers map (ingressd.replica: its workers fork with it);
-- init_worker_by_lua: what changed since.
function _M.init()
    view:load()
end
_M.init_worker = _M.init

-- Whether `name` is a host of this worker's route table (ingressd.router), up to date.
local function routed(name)
    local routes_view = router.worker_view()
    routes_view:refresh()
    return routes_view.lookup[name] ~= nil
end

_M.routed = routed

local function normalise(name)
    if find(name, "[A-Z]") then
        name = lower(name)
    end
    if byte(name, -1) == 46 then
        name = sub(name, 1, -2)
    end
    return name
end

local function call()
    local name, err = ssl.server_name()
    if name == nil then
        if err ~= nil then
            ngx_log(WARN, "ingressd: cannot read the SNI: ", err)
        end
        return
    end
    local v = view
    v:refresh()
    name = normalise(name)
    local uid = _M.find_uid(v, name, routed)
    if uid == nil then
        return
    end
    local pair
    pair, err = _M.pair(v, uid)
    if pair == nil and err == "not stored" then
        -- pruned by a write this worker has not seen yet: catch up once
        sync(v)
        uid = _M.find_uid(v, name, routed)
        if uid == nil then
            return
        end
        pair, err = _M.pair(v, uid)
    end
    if pair == nil then
        ngx_log(ERR, "ingressd: certificate ", uid, " of ", name, ": ", tostring(err),
                "; the default certificate is served")
        return
    end
    local ok
    ok, err = ssl.clear_certs()
    if not ok then
        ngx_log(ERR, "ingressd: clear_certs failed for ", name, ": ", tostring(err))
        return
    end
    ok, err = ssl.set_cert(pair.cert)
    if ok then
        ok, err = ssl.set_priv_key(pair.key)
    end
    if not ok then
        -- the handshake fails: no certificate left (clear_certs ran)
        ngx_log(ERR, "ingressd: cannot set certificate ", uid, " for ", name, ": ",
                tostring(err))
    end
end

function _M.call()
    local ok, err = pcall(call)
    if not ok then
        ngx_log(ERR, "ingressd: certificate selection failed: ", tostring(err))
    end
end

return _M
