-- ingressd.configuration: the HTTP endpoint the controller uses to change what Lua holds.
--
--   POST   /configuration/backends      JSON array: upsert by name            -> 201
--   PUT    /configuration/backends      JSON array: replace the whole set     -> 201
--   DELETE /configuration/backends      JSON array of names: remove them      -> 200
--   GET    /configuration/backends      every backend, sorted by name         -> 200 (JSON array)
--   POST   /configuration/routes        JSON array of host entries: upsert    -> 201
--   PUT    /configuration/routes        JSON array: replace the whole table   -> 201
--   DELETE /configuration/routes        JSON array of hosts: remove them      -> 200
--   GET    /configuration/routes        every entry, sorted by host           -> 200 (JSON array)
--   POST   /configuration/certificates  {"certificates", "servers"}: upsert   -> 201
--   PUT    /configuration/certificates  the same: replace both maps           -> 201
--   GET    /configuration/certificates  hosts and uids, no key material       -> 200 (JSON)
--   GET    /configuration/version       backends' version workers converge to -> 200 (text)
--   GET    /configuration/versions      {"backends", "routes", "certificates"} -> 200 (JSON)
--
-- Data flow: body (memory or temp file; over MAX_BODY -> 413) -> parse (validate all, store
-- nothing on error -> 400) -> store collection write under the shm lock (-> 500 when the dict
-- is full, 503 when the lock is busy) -> 201 {"version": V, "changed": N}. Workers pick the new
-- version up on their next request or handshake.
-- Certificate bodies must stay in memory (key material is never written to a file): over
-- MAX_CERTIFICATES_BODY, or buffered to a temp file by nginx anyway -> 413.

local backends = require("ingressd.backends")
local routes = require("ingressd.routes")
local certificates = require("ingressd.certificates")
local store = require("ingressd.store")

local ngx = ngx
local io_open, format, tostring, tonumber = io.open, string.format, tostring, tonumber

local _M = {}

_M.MAX_BODY = 64 * 1024 * 1024
-- Below the control server's client_body_buffer_size (32m in templates/nginx.conf.j2), so that
-- nginx keeps such a body in memory.
_M.MAX_CERTIFICATES_BODY = 16 * 1024 * 1024

local function respond(status, body, content_type)
    ngx.status = status
    ngx.header["Content-Type"] = content_type or "text/plain"
    ngx.print(body)
    return ngx.exit(ngx.HTTP_OK)
end

local function too_large(limit)
    return format("request body over %d bytes: send it in parts (POST upserts)\n", limit)
end

-- The request body as a string; or nil (no body); or nil, message, status.
-- `in_memory`: refuse a body nginx buffered to a temp file.
local function read_body(limit, in_memory)
    local length = tonumber(ngx.var.http_content_length or "")
    if length ~= nil and length > limit then
        return nil, too_large(limit), 413
    end
    ngx.req.read_body()
    local data = ngx.req.get_body_data()
    if data == nil then
        local path = ngx.req.get_body_file()
        if path == nil then
            return nil -- no body at all
        end
        if in_memory then
            return nil, "this body must fit in the control server's client_body_buffer_size "
                .. "(it holds private keys, which are never written to a file); "
                .. "send it in parts\n", 413
        end
        local f, err = io_open(path, "rb")
        if f == nil then
            return nil, "cannot open the request body file: " .. tostring(err) .. "\n", 500
        end
        data = f:read("*a")
        f:close()
    end
    if #data > limit then -- a chunked body says no length up front
        return nil, too_large(limit), 413
    end
    return data
end

local function method_not_allowed(method, allowed)
    ngx.header["Allow"] = allowed
    return respond(405, format("method %s not allowed; use %s\n", method, allowed))
end

local function written(uri, method, version, changed, status, ok_status)
    if version == nil then
        ngx.log(ngx.ERR, "ingressd: ", method, " ", uri, " failed: ", changed)
        return respond(status or 500, changed .. "\n")
    end
    return respond(ok_status or 201,
                   format('{"version":%d,"changed":%d}\n', version, changed), "application/json")
end

-- Read and parse the body of a write; answers the error itself. Returns what `parse` returns.
local function parsed_body(parse, empty_message, limit, in_memory, ...)
    local body, err, status = read_body(limit or _M.MAX_BODY, in_memory)
    if body == nil then
        if err ~= nil then
            return respond(status, err)
        end
        return respond(400, empty_message .. "\n")
    end
    local result
    result, err = parse(body, ...)
    if result == nil then
        return respond(400, err .. "\n")
    end
    return result
end

local function handle_backends(dict)
    local method = ngx.req.get_method()
    if method == "GET" then
        return respond(200, store.list(dict), "application/json")
    end
    if method == "DELETE" then
        local names = parsed_body(backends.parse_names,
                                  "empty body: expected a JSON array of backend names")
        local version, changed, status = store.write(dict, "upsert", {}, { delete = names })
        return written("/configuration/backends", method, version, changed, status, 200)
    end
    if method ~= "POST" and method ~= "PUT" then
        return method_not_allowed(method, "GET, POST, PUT, DELETE")
    end
    local items = parsed_body(backends.parse, "empty body: expected a JSON array of backends")
    local mode = (method == "PUT") and "replace" or "upsert"
    return written("/configuration/backends", method, store.write(dict, mode, items))
end

local function handle_routes(dict)
    local method = ngx.req.get_method()
    local coll = store.routes
    if method == "GET" then
        return respond(200, coll:list(dict), "application/json")
    end
    if method == "DELETE" then
        local hosts = parsed_body(routes.parse_hosts, "empty body: expected a JSON array of hosts")
        local version, changed, status = coll:write(dict, "upsert", {}, { delete = hosts })
        return written("/configuration/routes", method, version, changed, status, 200)
    end
    if method ~= "POST" and method ~= "PUT" then
        return method_not_allowed(method, "GET, POST, PUT, DELETE")
    end
    local items = parsed_body(routes.parse, "empty body: expected a JSON array of routes")
    local mode = (method == "PUT") and "replace" or "upsert"
    return written("/configuration/routes", method, coll:write(dict, mode, items))
end

local function handle_certificates(dict)
    local method = ngx.req.get_method()
    if method == "GET" then
        return respond(200, certificates.list(dict), "application/json")
    end
    if method ~= "POST" and method ~= "PUT" then
        return method_not_allowed(method, "GET, POST, PUT")
    end
    local replace = method == "PUT"
    local parsed = parsed_body(certificates.parse,
                               'empty body: expected {"certificates": {...}, "servers": {...}}',
                               _M.MAX_CERTIFICATES_BODY, true, replace)
    return written("/configuration/certificates", method,
                   certificates.write(dict, replace and "replace" or "upsert", parsed))
end

local function get_only(dict, answer)
    local method = ngx.req.get_method()
    if method ~= "GET" then
        return method_not_allowed(method, "GET")
    end
    return answer(dict)
end

local function handle_version(dict)
    return get_only(dict, function(d)
        return respond(200, format("%d", store.version(d)))
    end)
end

local function handle_versions(dict)
    return get_only(dict, function(d)
        return respond(200, format('{"backends":%d,"routes":%d,"certificates":%d}\n',
                                   store.version(d), store.routes:version(d),
                                   store.certificates:version(d)), "application/json")
    end)
end

_M.ROUTES = {
    ["/configuration/backends"] = handle_backends,
    ["/configuration/routes"] = handle_routes,
    ["/configuration/certificates"] = handle_certificates,
    ["/configuration/version"] = handle_version,
    ["/configuration/versions"] = handle_versions,
}

-- content_by_lua entry point. `dict` defaults to ngx.shared.ingressd_configuration (tests may
-- pass another one).
function _M.call(dict)
    dict = dict or ngx.shared.ingressd_configuration
    if dict == nil then
        return respond(500, "lua_shared_dict ingressd_configuration is not defined\n")
    end
    local uri = ngx.var.uri
    local handler = _M.ROUTES[uri]
    if handler == nil then
        return respond(404, format("unknown configuration endpoint %s\n", uri))
    end
    return handler(dict)
end

return _M
