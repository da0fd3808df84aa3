-- ingressd.configuration: the HTTP endpoint the controller uses to change the backend set.
--
--   POST /configuration/backends   JSON array: upsert by name            -> 201
--   PUT  /configuration/backends   JSON array: replace the whole set     -> 201
--   GET  /configuration/backends   every backend, sorted by name         -> 200 (JSON array)
--   GET  /configuration/version    version workers converge to          -> 200 (text)
--
-- Data flow: body (memory or temp file) -> backends.parse (validate all, store nothing on
-- error -> 400) -> store.write under the shm lock (-> 500 when the dict is full, 503 when the
-- lock is busy) -> 201 {"version": V, "changed": N}. Workers pick the new version up on their
-- next request (ingressd.balancer.rewrite).

local backends = require("ingressd.backends")
local store = require("ingressd.store")

local ngx = ngx
local io_open, format, tostring = io.open, string.format, tostring

local _M = {}

local function respond(status, body, content_type)
    ngx.status = status
    ngx.header["Content-Type"] = content_type or "text/plain"
    ngx.print(body)
    return ngx.exit(ngx.HTTP_OK)
end

local function read_body()
    ngx.req.read_body()
    local data = ngx.req.get_body_data()
    if data ~= nil then
        return data
    end
    local path = ngx.req.get_body_file()
    if path == nil then
        return nil -- no body at all
    end
    local f, err = io_open(path, "rb")
    if f == nil then
        return nil, "cannot open the request body file: " .. tostring(err)
    end
    data = f:read("*a")
    f:close()
    return data
end

local function handle_backends(dict)
    local method = ngx.req.get_method()
    if method == "GET" then
        return respond(200, store.list(dict), "application/json")
    end
    if method ~= "POST" and method ~= "PUT" then
        ngx.header["Allow"] = "GET, POST, PUT"
        return respond(405, format("method %s not allowed; use GET, POST or PUT\n", method))
    end
    local body, err = read_body()
    if body == nil then
        if err ~= nil then
            return respond(500, err .. "\n")
        end
        return respond(400, "empty body: expected a JSON array of backends\n")
    end
    local items
    items, err = backends.parse(body)
    if items == nil then
        return respond(400, err .. "\n")
    end
    local mode = (method == "PUT") and "replace" or "upsert"
    local version, changed, status = store.write(dict, mode, items)
    if version == nil then
        ngx.log(ngx.ERR, "ingressd: ", method, " /configuration/backends failed: ", changed)
        return respond(status or 500, changed .. "\n")
    end
    return respond(201, format('{"version":%d,"changed":%d}\n', version, changed),
                   "application/json")
end

local function handle_version(dict)
    local method = ngx.req.get_method()
    if method ~= "GET" then
        ngx.header["Allow"] = "GET"
        return respond(405, format("method %s not allowed; use GET\n", method))
    end
    return respond(200, format("%d", store.version(dict)))
end

_M.ROUTES = {
    ["/configuration/backends"] = handle_backends,
    ["/configuration/version"] = handle_version,
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
