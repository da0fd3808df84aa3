-- ingressd.routes: parse and validate a request body holding route table entries (one per host).
--
-- Data flow: body -> backends.split_array() (verbatim element texts) -> cjson decode of each
--            -> validate() -> {name = host, raw = text} items for store.routes.
-- The format is docs/routing.md "The route table". Each entry's text is stored verbatim; the
-- router (ingressd.router) decodes and indexes it per worker.
--
-- Validation refuses the whole body at the first error, naming the entry and the field:
--   route #2 "www.zkj.com": locations[1].class "x1" must match ^c[0-9a-f]+$
-- Regex paths are compiled with ngx.re (PCRE, as the router uses them); nothing else here
-- needs nginx.

local cjson = require("cjson.safe")
local backends = require("ingressd.backends")

local ngx = ngx
local type, ipairs, next, format, floor = type, ipairs, next, string.format, math.floor
local find, sub, byte, gmatch = string.find, string.sub, string.byte, string.gmatch
local decode, encode = cjson.decode, cjson.encode
local null = cjson.null
local is_array = backends.is_array

local _M = {}

local YIELD_EVERY = 256 -- entries checked between two yields to the event loop

_M.CATCH_ALL = "_"
_M.TYPES = { exact = true, prefix = true, regex = true }
_M.DEFAULT_STATUS = 503
-- nginx's default client_max_body_size (and ingress-nginx's proxy-body-size): a location that
-- does not say "maxBody" gets it.
_M.DEFAULT_MAX_BODY = 1048576
_M.MAX_PATH_LENGTH = 4096
_M.MAX_TEXT_LENGTH = 1024 -- namespace, ingress, backend names, hsts, appRoot
-- Options of every regex path: anchored at the start, case-insensitive (nginx's `location ~*`
-- with ^), PCRE JIT, compiled once per worker (lua_regex_cache_max_entries bounds that cache).
_M.REGEX_OPTIONS = "aijo"

-- A value as JSON for messages (cjson writes "/" as "\/": not here).
local function show(v)
    if v == null then
        return "null"
    end
    local text = encode(v) or "?"
    return (text:gsub("\\/", "/"))
end

_M.show = show

-- Whether `s` is a DNS name as Kubernetes allows it in a host: RFC 1123 labels, lower case.
local function dns_name(s)
    local n = #s
    if n == 0 or n > 253 or byte(s, n) == 46 then
        return false
    end
    for label in gmatch(s .. ".", "([^.]*)%.") do
        if #label > 63 or not find(label, "^[a-z0-9][a-z0-9-]*$") or byte(label, -1) == 45 then
            return false
        end
    end
    return true
end

-- "exact", "wildcard" or nil (not a host name). `_` is checked by the callers.
function _M.host_kind(s)
    if type(s) ~= "string" then
        return nil
    end
    if sub(s, 1, 2) == "*." then
        return dns_name(sub(s, 3)) and "wildcard" or nil
    end
    return dns_name(s) and "exact" or nil
end

local HOST_GRAMMAR = "a lower-case DNS name (RFC 1123), a one-label wildcard *.name, or _"

-- Printable ASCII without spaces (a path, a redirect target): no byte below 0x21 nor 0x7f.
local function printable(s, spaces)
    if spaces then
        return not find(s, "[%z\1-\31\127]")
    end
    return not find(s, "[%z\1-\32\127]")
end

local function optional_string(entry, field)
    local v = entry[field]
    if v == nil or v == null then
        return nil
    end
    if type(v) ~= "string" or #v > _M.MAX_TEXT_LENGTH or not printable(v, true) then
        return format(': "%s" must be a string of printable characters (at most %d bytes) '
                      .. "or null, not %s", field, _M.MAX_TEXT_LENGTH, show(v))
    end
    return nil
end

local function integer(v, min, max)
    return type(v) == "number" and v >= min and v <= max and floor(v) == v
end

local OPTIONAL_STRINGS = { "namespace", "ingress", "defaultBackend", "service", "servicePort" }

-- Check one location. Returns nil, or the end of an error message (after "locations[i]").
-- Messages are formatted only on errors: a table of 10,000 hosts is checked in one request.
local function validate_location(loc, seen, i)
    if type(loc) ~= "table" or is_array(loc) and #loc > 0 then
        return " must be a JSON object"
    end
    local typ = loc.type
    if type(typ) ~= "string" or not _M.TYPES[typ] then
        return format('.type %s must be "exact", "prefix" or "regex"', show(typ))
    end
    local path = loc.path
    if type(path) ~= "string" or path == "" or #path > _M.MAX_PATH_LENGTH then
        return format(".path %s must be a non-empty string of at most %d bytes",
                      show(path), _M.MAX_PATH_LENGTH)
    end
    local key
    if typ == "regex" then
        if not printable(path, true) then
            return format(".path %s has control characters", show(path))
        end
        local _, _, err = ngx.re.find("", path, "ai")
        if err then
            return format(".path %s is not a valid regex: %s", show(path), err)
        end
        key = path
    else
        if byte(path) ~= 47 or not printable(path) then
            return format('.path %s must start with "/" and have no spaces or control '
                          .. "characters", show(path))
        end
        key = (typ == "prefix") and _M.normalize_prefix(path) or path
    end
    local of_type = seen[typ]
    if of_type[key] then
        return format(": the %s path %s is already at locations[%d]",
                      typ, show(key), of_type[key])
    end
    of_type[key] = i
    local class = loc.class
    if type(class) ~= "string" or #class > 64 or not find(class, "^c[0-9a-f]+$") then
        return format(".class %s must match ^c[0-9a-f]+$ (at most 64 characters)", show(class))
    end
    local backend = loc.backend
    if backend ~= nil and backend ~= null and (type(backend) ~= "string" or backend == ""
            or #backend > _M.MAX_TEXT_LENGTH or not printable(backend)) then
        return format(".backend %s must be a backend name or null", show(backend))
    end
    local status = loc.status
    if status ~= nil and status ~= null and not integer(status, 400, 599) then
        return format(".status %s must be an integer from 400 to 599 or null", show(status))
    end
    local max_body = loc.maxBody
    if max_body ~= nil and max_body ~= null and not integer(max_body, 0, 2 ^ 53) then
        return format(".maxBody %s must be a number of bytes (an integer >= 0; 0 = no "
                      .. "limit) or null", show(max_body))
    end
    for _, field in ipairs(OPTIONAL_STRINGS) do
        local err = optional_string(loc, field)
        if err then
            return err
        end
    end
    return nil
end

-- Prefix paths match element-wise and a trailing slash is ignored: "/foo/" is "/foo".
function _M.normalize_prefix(path)
    local n = #path
    while n > 1 and byte(path, n) == 47 do
        n = n - 1
    end
    return sub(path, 1, n)
end

-- Check one decoded entry. `index` is its 1-based position in the array.
-- Returns nil when valid, else an error message naming the entry and the field.
function _M.validate(index, e)
    if type(e) ~= "table" or is_array(e) and next(e) ~= nil then
        return format("route #%d: must be a JSON object", index)
    end
    local host = e.host
    if host ~= _M.CATCH_ALL and not _M.host_kind(host) then
        return format('route #%d: "host" %s must be %s', index, show(host), HOST_GRAMMAR)
    end
    local function where()
        return format('route #%d "%s"', index, host)
    end
    local aliases = e.aliases
    if aliases ~= nil and aliases ~= null then
        if type(aliases) ~= "table" or not is_array(aliases) then
            return where() .. ': "aliases" must be an array of host names or null'
        end
        for i, alias in ipairs(aliases) do
            if not _M.host_kind(alias) then
                return format("%s: aliases[%d] %s must be a lower-case DNS name or a "
                              .. "one-label wildcard *.name", where(), i, show(alias))
            end
        end
    end
    local hsts = e.hsts
    if hsts ~= nil and hsts ~= null and hsts ~= false and (type(hsts) ~= "string"
            or hsts == "" or #hsts > _M.MAX_TEXT_LENGTH or not printable(hsts, true)) then
        return format('%s: "hsts" %s must be the Strict-Transport-Security value (a string) '
                      .. "or false/null", where(), show(hsts))
    end
    local app_root = e.appRoot
    if app_root ~= nil and app_root ~= null and (type(app_root) ~= "string"
            or byte(app_root) ~= 47 or #app_root > _M.MAX_TEXT_LENGTH
            or not printable(app_root)) then
        return format('%s: "appRoot" %s must be a path starting with "/" (no spaces or '
                      .. "control characters) or null", where(), show(app_root))
    end
    local locations = e.locations
    if locations == nil or locations == null then
        return nil
    end
    if type(locations) ~= "table" or not is_array(locations) then
        return where() .. ': "locations" must be an array'
    end
    local seen = { exact = {}, prefix = {}, regex = {} }
    for i, loc in ipairs(locations) do
        local err = validate_location(loc, seen, i)
        if err then
            return format("%s: locations[%d]%s", where(), i, err)
        end
    end
    return nil
end

-- Parse a request body into an array of {name = host, raw = verbatim JSON text}.
-- Returns items, or nil and an error message (nothing partial is ever returned).
function _M.parse(body)
    local texts, err = backends.split_array(body, "routes")
    if texts == nil then
        return nil, err
    end
    local items = {}
    local seen = {}
    local yield = ngx.get_phase() == "content"
    for i, raw in ipairs(texts) do
        if yield and i % YIELD_EVERY == 0 then
            ngx.sleep(0) -- let this worker's other requests run during a large table
        end
        local e, derr = decode(raw)
        if e == nil then
            return nil, format("route #%d: invalid JSON: %s", i, derr or "?")
        end
        local verr = _M.validate(i, e)
        if verr ~= nil then
            return nil, verr
        end
        if seen[e.host] then
            return nil, format('route #%d: duplicate host "%s" (first at #%d)',
                               i, e.host, seen[e.host])
        end
        seen[e.host] = i
        items[i] = { name = e.host, raw = raw }
    end
    return items
end

-- Parse the body of a DELETE: a JSON array of hosts. Returns the array, or nil and a message.
function _M.parse_hosts(body)
    local hosts = decode(body or "")
    if type(hosts) ~= "table" or not is_array(hosts) then
        return nil, "body must be a JSON array of hosts"
    end
    for i, host in ipairs(hosts) do
        if host ~= _M.CATCH_ALL and not _M.host_kind(host) then
            return nil, format("hosts[%d] %s must be %s", i, show(host), HOST_GRAMMAR)
        end
    end
    return hosts
end

return _M
