-- ingressd.external_auth: the auth-url subrequest when auth-keepalive is set. access_by_lua.
--
-- nginx's auth_request does not keep connections to an upstream block alive, so for
-- auth-keepalive the location asks the auth service itself (as ingress-nginx does):
--   check(path, share_vars, headers)
--     $ingressd_auth_skip = "1" (a no-auth-locations path) -> let the request through
--     ngx.location.capture(path)  -- the internal location /_ingressd_auth_<id>, which proxies
--                                 -- through upstream ingressd_auth_<id> with keepalive
--     2xx      -> $ingressd_auth_cookie = Set-Cookie, $ingressd_auth_header_<i> = headers[i+1]
--                 (the location copies them to the upstream request), and the request goes on
--     401, 403 -> that status (error_page 401 sends a 401 to auth-signin)
--     else     -> 500
-- ``headers`` are the auth-response-headers names, validated by the controller.

local ngx = ngx
local ipairs = ipairs
local type = type

local _M = {}

local function first(value)
    if type(value) == "table" then
        return value[1]
    end
    return value
end

function _M.check(path, share_vars, headers)
    local var = ngx.var
    if var.ingressd_auth_skip == "1" then
        return
    end
    local res = ngx.location.capture(path, {
        method = ngx.HTTP_GET, body = "", share_all_vars = share_vars,
    })
    local status = res.status
    if status >= 200 and status < 300 then
        -- the first, as $upstream_http_set_cookie is for auth_request (nginx 1.22)
        var.ingressd_auth_cookie = first(res.header["Set-Cookie"]) or ""
        for i, name in ipairs(headers) do
            var["ingressd_auth_header_" .. (i - 1)] = first(res.header[name]) or ""
        end
        return
    end
    if status == ngx.HTTP_UNAUTHORIZED or status == ngx.HTTP_FORBIDDEN then
        return ngx.exit(status)
    end
    return ngx.exit(ngx.HTTP_INTERNAL_SERVER_ERROR)
end

return _M
