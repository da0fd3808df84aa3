-- ingressd.router: picks the route of a request from the route table (docs/routing.md) and
-- hands it to the settings class's named location. rewrite_by_lua of the entry location.
--
-- Data flow:
--   route()  (every request of the entry location)
--     -> view:refresh() (ingressd.replica): one shm get of "routes:version", equal to this
--        worker's -> nothing (hot path); else the hosts changed since (whole writes only), or
--        every host (too far behind, a replace); decode only changed texts (the worker loaded
--        the table in init_by_lua and init_worker)
--     -> host: $host (nginx lower-cases it and drops the port and a trailing dot) in `lookup`
--        (hosts and aliases), else "*." + the host minus its first label, else "_", else 404
--     -> $ingressd_hsts (HTTPS to a host with a certificate: every answer from here on)
--     -> appRoot and $uri == "/" -> 302 to $scheme://$http_host<appRoot>
--     -> location (find()): exact map; longest prefix through the prefix map, probing the URI
--        at each "/" from the longest candidate down; regexes longest first; the prefix; 404
--     -> Content-Length over maxBody -> 413
--     -> $proxy_upstream_name ("" without backend), $namespace, $ingress_name,
--        $ingressd_default_backend -> a class listed in init() (its block has only
--        content-phase directives): the balancer's rewrite step here (ingressd.balancer
--        settle(): canary, default backend, 503), its named location runs no Lua; any other
--        class runs that step in its block -> ngx.exec("@<class>"); a route without backend
--        too: its class's block runs the redirects and ends with `return <status>`
--
-- A full load (worker start, a replace, too far behind: thousands of texts) makes stubs
-- {host, raw, names = {host}, compiled = false} of texts that surely have no aliases, compiled
-- in place on the first request for the host (the master loads in init_by_lua: its workers
-- fork with the stubs). A compiled entry (per worker, built once per JSON text):
--   {host, raw, names (host + aliases), hsts (value or nil), app_root (or nil),
--    exact = {path -> loc}, prefix = {normalised path -> loc}, prefix_max (longest prefix
--    length, 0 = no prefix), regexes = {{re, loc}, ...} longest first}
-- a compiled location: {target = "@c..", balance (the router runs the balancer's rewrite
--    step), backend (or nil), status, namespace, ingress,
--    default_backend, service_name (or nil), service_port, max_body (0 = no limit), type, path}
--
-- Two entries may name the same host (an alias of one, the host of the other): the entry
-- whose own host it is wins, else the smallest host; the same in every worker whatever the
-- order of updates (`claims` keeps every claimant).

local cjson = require("cjson.safe")
local store = require("ingressd.store")
local replica = require("ingressd.replica")
local routes = require("ingressd.routes")
local balancer = require("ingressd.balancer")

local ngx = ngx
local var = ngx.var
local ngx_log, ngx_exit, ngx_exec, ngx_redirect = ngx.log, ngx.exit, ngx.exec, ngx.redirect
local re_find = ngx.re.find
local ERR = ngx.ERR
local type, ipairs, pairs, next, tostring, tonumber, pcall =
    type, ipairs, pairs, next, tostring, tonumber, pcall
local find, sub, byte = string.find, string.sub, string.byte
local sort = table.sort
local decode = cjson.decode
local null = cjson.null

local ROUTES = store.routes
local CATCH_ALL = routes.CATCH_ALL
local REGEX_OPTIONS = routes.REGEX_OPTIONS
local normalize_prefix = routes.normalize_prefix
local settle = balancer.settle

-- Class id -> true: the router runs the balancer's rewrite step for the routes of these
-- classes (their named locations run no Lua); set by init() from nginx.conf, so a worker's
-- list and its named locations come from the same configuration.
local balanced = {}
-- "@<class id>" of the home class (init()), whose routes stay in the entry location: its block
-- is the home class's, so they are served there without ngx.exec; nil when there is none.
local home
-- Whether nginx.conf reads $namespace, $ingress_name, $service_name / $service_port (init()):
-- the router writes them only then (a write is a lookup by name per request).
local write_namespace, write_ingress, write_service = true, true, true
-- location /'s client_max_body_size in bytes (init(); 0: none): nginx checks Content-Length
-- against it before the router runs; the router checks the routes of another limit.
local entry_body_limit = 0

local _M = {}

-- ----------------------------------------------------------------------------- compile

local function str(v, default)
    if type(v) == "string" then
        return v
    end
    return default
end

local function compile_location(loc)
    local max_body = loc.maxBody
    if type(max_body) ~= "number" then
        max_body = routes.DEFAULT_MAX_BODY
    end
    local status = loc.status
    if type(status) ~= "number" then
        status = routes.DEFAULT_STATUS
    end
    local backend = loc.backend
    if type(backend) ~= "string" or backend == "" then
        backend = nil
    end
    return {
        target = "@" .. loc.class,
        balance = backend ~= nil and balanced[loc.class] == true,
        backend = backend,
        status = status,
        namespace = str(loc.namespace, ""),
        ingress = str(loc.ingress, ""),
        default_backend = str(loc.defaultBackend, ""),
        -- only routes whose errors go to an error backend carry them (X-Service-Name/-Port)
        service_name = type(loc.service) == "string" and loc.service or nil,
        service_port = str(loc.servicePort, ""),
        max_body = max_body,
        type = loc.type,
        path = loc.path,
    }
end

local function by_length_then_path(a, b)
    if #a.re ~= #b.re then
        return #a.re > #b.re
    end
    return a.re < b.re
end

-- Whether a route entry's JSON text surely has no aliases, seen without decoding it: no
-- "aliases" at all, or one `"aliases":null` or `"aliases":[]` (the controller's texts); and no
-- \u escape, with which a key could spell "aliases" otherwise. False: decode to know.
local function surely_no_aliases(raw)
    if find(raw, "\\u", 1, true) then
        return false
    end
    local first = find(raw, "aliases", 1, true)
    if first == nil then
        return true
    end
    if byte(raw, first - 1) ~= 34 or sub(raw, first + 7, first + 8) ~= '":'
            or find(raw, "aliases", first + 7, true) then
        return false
    end
    return sub(raw, first + 9, first + 12) == "null" or sub(raw, first + 9, first + 10) == "[]"
end

_M.surely_no_aliases = surely_no_aliases

-- Compile the JSON text `raw` of `host` (validated by ingressd.routes when it was stored) into
-- `entry`, which gets the fields of a compiled entry. Raises on text that does not decode.
local function compile_into(entry, host, raw)
    local e = decode(raw)
    if type(e) ~= "table" then
        error("route entry of " .. host .. " does not decode")
    end
    local names = { host }
    if type(e.aliases) == "table" then
        for _, alias in ipairs(e.aliases) do
            if type(alias) == "string" then
                names[#names + 1] = alias
            end
        end
    end
    local hsts = e.hsts
    if type(hsts) ~= "string" or hsts == "" then
        hsts = nil
    end
    local app_root = e.appRoot
    if type(app_root) ~= "string" or app_root == "" then
        app_root = nil
    end
    entry.host, entry.raw, entry.names, entry.hsts, entry.app_root = host, raw, names, hsts,
        app_root
    entry.exact, entry.prefix, entry.prefix_max, entry.regexes = {}, {}, 0, {}
    entry.compiled = true
    local locations = e.locations
    if type(locations) ~= "table" or locations == null then
        locations = {}
    end
    local exact, prefix, regexes = entry.exact, entry.prefix, entry.regexes
    -- exact locations first: they beat the exact form of a prefix on the same path
    for _, loc in ipairs(locations) do
        if type(loc) == "table" and loc.type == "exact" and exact[loc.path] == nil then
            exact[loc.path] = compile_location(loc)
        end
    end
    for _, loc in ipairs(locations) do
        if type(loc) == "table" and loc.type == "prefix" and type(loc.path) == "string" then
            local p = normalize_prefix(loc.path)
            if prefix[p] == nil then
                local c = compile_location(loc)
                prefix[p] = c
                if #p > entry.prefix_max then
                    entry.prefix_max = #p
                end
                -- Prefix /foo matches /foo itself and ends the search there, as nginx's
                -- `location = /foo`; "/" has no exact form (regexes still get their turn)
                if p ~= "/" and exact[p] == nil then
                    exact[p] = c
                end
            end
        elseif type(loc) == "table" and loc.type == "regex" and type(loc.path) == "string" then
            regexes[#regexes + 1] = { re = loc.path, loc = compile_location(loc) }
        end
    end
    sort(regexes, by_length_then_path)
    return entry
end

-- The compiled entry of `host` from its JSON text. Raises on text that does not decode.
function _M.compile(host, raw)
    return compile_into({}, host, raw)
end

-- An entry to compile on first use (compile_lazily()): host, raw and names only, when the
-- text surely has no aliases; else compiled now (the aliases are in the decoded text).
local function stub(host, raw)
    if surely_no_aliases(raw) then
        return { host = host, raw = raw, names = { host }, compiled = false }
    end
    return _M.compile(host, raw)
end

-- Compile a stub in place (the same table: lookup and claims keep pointing at it). A text
-- that does not decode leaves an entry without locations (404), logged.
local function compile_lazily(view, entry)
    view.stats.decoded = view.stats.decoded + 1
    local ok, err = pcall(compile_into, entry, entry.host, entry.raw)
    if not ok then
        ngx_log(ERR, "ingressd: cannot use the route entry of ", entry.host, ": ", tostring(err))
        entry.exact, entry.prefix, entry.prefix_max, entry.regexes = {}, {}, 0, {}
        entry.compiled = true
    end
end

-- ----------------------------------------------------------------------------- match

-- The location of `entry` for the normalised URI `uri`, or nil (404). Pure but for ngx.re.
local function find_location(entry, uri)
    local loc = entry.exact[uri]
    if loc ~= nil then
        return loc
    end
    local found
    local max = entry.prefix_max
    if max > 0 then
        local prefix = entry.prefix
        -- candidates are uri[1, j-1] where uri[j] == "/", longest first; none longer than max
        local j = #uri
        if j > max + 1 then
            j = max + 1
        end
        while j > 1 do
            if byte(uri, j) == 47 then
                found = prefix[sub(uri, 1, j - 1)]
                if found ~= nil then
                    break
                end
            end
            j = j - 1
        end
        if found == nil then
            found = prefix["/"]
        end
    end
    local regexes = entry.regexes
    for i = 1, #regexes do
        local r = regexes[i]
        local from, _, err = re_find(uri, r.re, REGEX_OPTIONS)
        if from then
            return r.loc
        end
        if err then
            ngx_log(ERR, "ingressd: regex location ", r.re, " of ", entry.host, ": ", err)
        end
    end
    return found
end

_M.find_location = find_location

-- The entry for a lower-cased host name, or nil.
local function find_entry(lookup, host)
    local entry = lookup[host]
    if entry ~= nil then
        return entry
    end
    if host ~= nil then
        local dot = find(host, ".", 1, true)
        if dot ~= nil then
            entry = lookup["*" .. sub(host, dot)]
            if entry ~= nil then
                return entry
            end
        end
    end
    return lookup[CATCH_ALL]
end

-- (entry, location) for a host and URI in `view`; either may be nil.
function _M.find(view, host, uri)
    local entry = find_entry(view.lookup, host)
    if entry == nil then
        return nil, nil
    end
    if not entry.compiled then
        compile_lazily(view, entry)
    end
    return entry, find_location(entry, uri)
end

-- ----------------------------------------------------------------------------- worker view

-- A view: an ingressd.replica of store.routes with entries = {host -> entry},
-- claims = {name -> {host -> true}}, lookup = {name -> entry}.
local apply

function _M.new_view(dict)
    return replica.new(ROUTES, dict, apply,
                       { entries = {}, claims = {}, lookup = {}, stats = { decoded = 0 } })
end

-- The entry for `host`'s text: `old` when the text is the same, else compiled now, or, `lazy`
-- (a full load: thousands of texts), a stub compiled on first use.
local function build(view, host, raw, old, lazy)
    if old ~= nil and old.raw == raw then
        return old
    end
    if lazy then
        local ok, entry = pcall(stub, host, raw)
        if ok then
            if entry.compiled then
                view.stats.decoded = view.stats.decoded + 1
            end
            return entry
        end
    end
    view.stats.decoded = view.stats.decoded + 1
    local ok, entry = pcall(_M.compile, host, raw)
    if not ok then
        ngx_log(ERR, "ingressd: cannot use the route entry of ", host, ": ", tostring(entry))
        return old
    end
    return entry
end

-- Who serves `name` among its claimants: the entry whose host it is, else the smallest host.
local function resolve(view, name)
    local claimants = view.claims[name]
    local entries = view.entries
    if claimants == nil or next(claimants) == nil then
        view.claims[name] = nil
        view.lookup[name] = nil
        return
    end
    if claimants[name] and entries[name] ~= nil then
        view.lookup[name] = entries[name]
        return
    end
    local best
    for host in pairs(claimants) do
        if best == nil or host < best then
            best = host
        end
    end
    view.lookup[name] = entries[best]
end

local function claim(view, entry, touched)
    for _, name in ipairs(entry.names) do
        local claimants = view.claims[name]
        if claimants == nil then
            claimants = {}
            view.claims[name] = claimants
        end
        claimants[entry.host] = true
        touched[name] = true
    end
end

local function unclaim(view, entry, touched)
    for _, name in ipairs(entry.names) do
        local claimants = view.claims[name]
        if claimants ~= nil then
            claimants[entry.host] = nil
        end
        touched[name] = true
    end
end

-- Apply a read of the route table (ingressd.replica): unchanged texts keep their entry.
apply = function(view, items, full)
    local touched = {}
    if full then
        local old = view.entries
        local entries = {}
        view.entries = entries
        view.claims = {}
        view.lookup = {}
        for host, raw in pairs(items) do
            local entry = raw and build(view, host, raw, old[host], true)
            if entry then
                entries[host] = entry
                claim(view, entry, touched)
            end
        end
    else
        local entries = view.entries
        for host, raw in pairs(items) do
            local old = entries[host]
            local new = raw and build(view, host, raw, old) or nil
            if new ~= old then
                if old ~= nil then
                    unclaim(view, old, touched)
                end
                entries[host] = new
                if new ~= nil then
                    claim(view, new, touched)
                end
            end
        end
    end
    for name in pairs(touched) do
        resolve(view, name)
    end
end

-- Bring `view` to the shared dict's routes version (whole writes only).
function _M.sync(view)
    return view:sync()
end

-- ----------------------------------------------------------------------------- nginx phase

local view = _M.new_view(replica.shared_dict()) -- this worker's view of the route table

function _M.worker_view()
    return view
end

-- init_by_lua: `classes` (the ids of the classes whose routes the router balances, from
-- nginx.conf), `home_class` (the id of the class whose block is the entry location, or nil)
-- and `written` (the route variables nginx.conf reads: "namespace", "ingress_name",
-- "service_name", "service_port"; nil: all) and `body_limit` (location /'s
-- client_max_body_size in bytes, 0: none), then the master reads the table
-- (ingressd.replica: its workers fork with it); init_worker_by_lua: what changed since.
function _M.init(classes, home_class, written, body_limit)
    balanced = {}
    for _, id in ipairs(classes or {}) do
        balanced[id] = true
    end
    home = home_class and ("@" .. home_class) or nil
    entry_body_limit = tonumber(body_limit) or 0
    if written ~= nil then
        local read = {}
        for _, name in ipairs(written) do
            read[name] = true
        end
        write_namespace, write_ingress = read.namespace, read.ingress_name
        write_service = read.service_name or read.service_port
    end
    view:load()
end

function _M.init_worker()
    view:load()
end

function _M.route()
    view:refresh()
    local entry = find_entry(view.lookup, var.host)
    if entry == nil then
        return ngx_exit(404)
    end
    if not entry.compiled then
        compile_lazily(view, entry)
    end
    -- First, as --routing nginx adds the header at server level: every answer of a host with a
    -- certificate carries it over HTTPS, the router's own (302, 413) included.
    -- Each ngx.var read or write costs a lookup by name: only what differs from the "" the
    -- server's `set` lines gave the variables is written.
    local hsts = entry.hsts
    if hsts ~= nil and var.https == "on" then
        var.ingressd_hsts = hsts
    end
    local uri = var.uri
    local app_root = entry.app_root
    if app_root ~= nil and uri == "/" then
        local host = var.http_host or var.host
        return ngx_redirect(var.scheme .. "://" .. host .. app_root, 302)
    end
    local loc = find_location(entry, uri)
    if loc == nil then
        return ngx_exit(404)
    end
    local target = loc.target
    local stay = target == home
    local max_body = loc.max_body
    if max_body ~= entry_body_limit then
        -- nginx checked Content-Length against location /'s limit (the largest of the
        -- classes'), which is not this route's. $content_length: the header nginx parsed (a
        -- third of $http_content_length's cost)
        local length = var.content_length
        if length ~= nil then
            if max_body > 0 and (tonumber(length) or 0) > max_body then
                return ngx_exit(413)
            end
        elseif stay and var.http_transfer_encoding ~= nil then
            -- a body of unknown length is counted as it is read, against the limit of the
            -- location reading it: the class's named location has the class's
            stay = false
        end
    end
    -- A route without backend goes to its class too: the class's block runs its redirects
    -- (ssl-redirect: 308 before the status, as a location of --routing nginx does) and ends
    -- with `return <status>`.
    local backend = loc.backend
    if backend ~= nil then
        var.proxy_upstream_name = backend
    end
    if write_namespace and loc.namespace ~= "" then
        var.namespace = loc.namespace
    end
    if write_ingress and loc.ingress ~= "" then
        var.ingress_name = loc.ingress
    end
    if loc.default_backend ~= "" then
        var.ingressd_default_backend = loc.default_backend
    end
    if write_service and loc.service_name then
        var.service_name = loc.service_name
        var.service_port = loc.service_port
    end
    if loc.balance then
        -- canary, default backend or 503 (ngx.exit: no return), as the named location's own
        -- rewrite_by_lua would have done with nothing before it
        settle(backend, loc.default_backend)
    end
    if stay then
        return -- the entry location is the home class's block
    end
    return ngx_exec(target)
end

return _M
