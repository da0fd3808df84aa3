-- ingressd.balancer.sticky: cookie session affinity (affinity: cookie).
--
-- Data flow: balance(tried) reads the affinity cookie ($cookie_<name>) ->
--   balanced mode:   the cookie holds a random key; the endpoint is the consistent hash of it
--                    (chash ring), so adding pods moves a share of the sessions to them
--   persistent mode: the cookie holds the md5 of the endpoint's "address:port"; the session
--                    stays there for as long as that endpoint exists
-- -> no cookie (or its endpoint is gone, or this is a retry): pick a new endpoint (balanced:
-- a fresh random key; persistent: round robin) and Set-Cookie with the session-cookie-*
-- attributes (on a retry only with session-cookie-change-on-failure).
-- The cookie is "<key>|<backend key>" (ingress-nginx's form; the backend key is a digest of
-- the backend's name): is_affinitized() tells whether the request's session belongs to this
-- backend, so that a canary sharing the main backend's cookie (affinity-canary-behavior
-- sticky) keeps the sessions it started. Secure when session-cookie-secure, or on HTTPS.
--
-- new(entry, mode) with mode "balanced" or "persistent"; sync(entry); balance(tried);
-- is_affinitized(). lookup(key), split(value) and new_session(tried) are separate for the
-- unit tests.

local chash = require("ingressd.balancer.chash")
local round_robin = require("ingressd.balancer.round_robin")

local setmetatable, type, tostring, format = setmetatable, type, tostring, string.format
local find, sub, concat = string.find, string.sub, table.concat

local _M = {}
local mt = { __index = _M }

local function config_of(entry)
    local affinity = entry.backend and entry.backend.sessionAffinityConfig
    local cookie = type(affinity) == "table" and affinity.cookieSessionAffinity or nil
    if type(cookie) ~= "table" then
        cookie = {}
    end
    local name = cookie.name
    if type(name) ~= "string" or not find(name, "^[%w_.-]+$") then
        name = "INGRESSCOOKIE"
    end
    local path = cookie.path
    if type(path) ~= "string" or not find(path, "^/[%w._~!*(),:@+=&/-]*$") then
        path = "/"
    end
    local samesite = cookie.samesite
    if samesite ~= "None" and samesite ~= "Lax" and samesite ~= "Strict" then
        samesite = nil
    end
    local domain = cookie.domain
    if type(domain) ~= "string" or #domain > 254 or not find(domain, "^%.?[%w][%w.-]*$") then
        domain = nil
    end
    return {
        name = name,
        var = "cookie_" .. name,
        path = path,
        max_age = type(cookie.maxage) == "number" and cookie.maxage or nil,
        expires = type(cookie.expires) == "number" and cookie.expires or nil,
        samesite = samesite,
        secure = cookie.secure == true,
        domain = domain,
        change_on_failure = cookie.changeonfailure == true,
    }
end

function _M.new(entry, mode)
    local self = setmetatable({ mode = mode or "balanced" }, mt)
    -- The backend's half of the cookie value: its name alone decides it.
    self.backend_key = ngx.md5(ngx.md5(entry.name) .. entry.name)
    self.ring = chash.new(entry)
    self.rr = round_robin.new(entry)
    self:sync(entry)
    return self
end

function _M.sync(self, entry)
    self.config = config_of(entry)
    self.ring:sync(entry)
    self.rr:sync(entry)
    local by_digest = {}
    for _, ep in ipairs(entry.endpoints) do
        by_digest[ngx.md5(ep.key)] = ep
    end
    self.by_digest = by_digest
    self.n = entry.n
end

-- "<key>|<backend key>" -> key, backend key (nil for a cookie without one).
function _M.split(value)
    if type(value) ~= "string" then
        return nil, nil
    end
    local bar = find(value, "|", 1, true)
    if bar == nil then
        return value, nil
    end
    return sub(value, 1, bar - 1), sub(value, bar + 1)
end

-- Whether the request's affinity cookie names this backend.
function _M.is_affinitized(self)
    local _, backend_key = _M.split(ngx.var[self.config.var])
    return backend_key ~= nil and backend_key == self.backend_key
end

-- The endpoint a cookie's key points at, or nil.
function _M.lookup(self, value)
    if type(value) ~= "string" or value == "" then
        return nil
    end
    if self.mode == "persistent" then
        return self.by_digest[value]
    end
    return self.ring:find(value)
end

-- A new session: (endpoint, cookie value).
function _M.new_session(self, tried)
    if self.mode == "persistent" then
        local ep = self.rr:balance(tried)
        return ep, ep and ngx.md5(ep.key)
    end
    local key = format("%x%x%x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff),
                       ngx.worker.pid())
    return self.ring:find(key, tried), key
end

-- The Set-Cookie value; `https`: the request came over HTTPS (Secure without
-- session-cookie-secure, as ingress-nginx).
function _M.cookie(self, value, https)
    local c = self.config
    local parts = { c.name .. "=" .. value, "Path=" .. c.path }
    if c.domain then
        parts[#parts + 1] = "Domain=" .. c.domain
    end
    if c.max_age then
        parts[#parts + 1] = "Max-Age=" .. tostring(c.max_age)
    end
    if c.expires then
        parts[#parts + 1] = "Expires=" .. ngx.cookie_time(ngx.time() + c.expires)
    end
    if c.samesite then
        parts[#parts + 1] = "SameSite=" .. c.samesite
    end
    if c.secure or https then
        parts[#parts + 1] = "Secure"
    end
    parts[#parts + 1] = "HttpOnly"
    return concat(parts, "; ")
end

function _M.balance(self, tried)
    if self.n == 0 then
        return nil
    end
    if tried == nil then
        local ep = self:lookup((_M.split(ngx.var[self.config.var])))
        if ep ~= nil then
            return ep
        end
    end
    local ep, value = self:new_session(tried)
    if ep ~= nil and (tried == nil or self.config.change_on_failure) then
        ngx.header["Set-Cookie"] = self:cookie(value .. "|" .. self.backend_key,
                                               ngx.var.https == "on")
    end
    return ep
end

return _M
