-- Cookie affinity: balanced (chash of a random key) and persistent (digest of the endpoint).

local T = require("tests.assert")
local sticky = require("ingressd.balancer.sticky")

local function entry(n, cookie)
    local endpoints = {}
    for i = 1, n do
        endpoints[i] = { address = "10.0.0." .. i, port = 80, key = "10.0.0." .. i .. ":80" }
    end
    return { name = "b", endpoints = endpoints, n = n, backend = {
        sessionAffinityConfig = { name = "cookie", mode = "balanced",
                                  cookieSessionAffinity = cookie or { name = "SESSION" } } } }
end

local cases = {}

cases["balanced: a cookie value always maps to the same endpoint"] = function()
    local inst = sticky.new(entry(4), "balanced")
    for _ = 1, 20 do
        local ep, value = inst:new_session()
        T.eq(inst:lookup(value).key, ep.key)
        T.eq(inst:lookup(value).key, ep.key)
    end
end

cases["balanced: scaling up moves some sessions, not all"] = function()
    local inst = sticky.new(entry(4), "balanced")
    local sessions = {}
    for i = 1, 400 do
        local ep, value = inst:new_session()
        sessions[i] = { value, ep.key }
    end
    inst:sync(entry(5))
    local moved = 0
    for _, s in ipairs(sessions) do
        if inst:lookup(s[1]).key ~= s[2] then
            moved = moved + 1
        end
    end
    T.truthy(moved > 20 and moved < 160, "moved " .. moved .. " of 400")
end

cases["persistent: sessions stay on their endpoint while it exists"] = function()
    local inst = sticky.new(entry(4), "persistent")
    local sessions = {}
    for i = 1, 40 do
        local ep, value = inst:new_session()
        sessions[i] = { value, ep.key }
    end
    inst:sync(entry(6))
    for _, s in ipairs(sessions) do
        T.eq(inst:lookup(s[1]).key, s[2])
    end
    inst:sync(entry(2))
    for _, s in ipairs(sessions) do
        local ep = inst:lookup(s[1])
        if s[2] == "10.0.0.1:80" or s[2] == "10.0.0.2:80" then
            T.eq(ep.key, s[2])
        else
            T.is_nil(ep, "a session of a removed endpoint must start over")
        end
    end
end

cases["persistent: new sessions are spread round robin"] = function()
    local inst = sticky.new(entry(3), "persistent")
    local seen = {}
    for _ = 1, 3 do
        seen[inst:new_session().key] = true
    end
    T.truthy(seen["10.0.0.1:80"] and seen["10.0.0.2:80"] and seen["10.0.0.3:80"], "all used")
end

cases["unknown or empty cookie values find nothing in persistent mode"] = function()
    local inst = sticky.new(entry(3), "persistent")
    T.is_nil(inst:lookup("nope"))
    T.is_nil(inst:lookup(""))
    T.is_nil(inst:lookup(nil))
end

cases["the cookie carries the session-cookie attributes"] = function()
    local inst = sticky.new(entry(1, { name = "S", path = "/app", maxage = 60, samesite = "Lax",
                                      secure = true }), "balanced")
    T.eq(inst:cookie("abc"), "S=abc; Path=/app; Max-Age=60; SameSite=Lax; Secure; HttpOnly")
    inst = sticky.new(entry(1, { name = "S", expires = 3600 }), "balanced")
    T.contains(inst:cookie("abc"), "; Expires=")
end

cases["Secure on HTTPS without session-cookie-secure; Domain when set"] = function()
    local inst = sticky.new(entry(1, { name = "S", domain = ".example.com" }), "balanced")
    T.eq(inst:cookie("abc", false), "S=abc; Path=/; Domain=.example.com; HttpOnly")
    T.eq(inst:cookie("abc", true), "S=abc; Path=/; Domain=.example.com; Secure; HttpOnly")
    inst = sticky.new(entry(1, { name = "S", domain = "evil.com; Secure=no" }), "balanced")
    T.eq(inst:cookie("abc", false), "S=abc; Path=/; HttpOnly")
end

cases["a cookie names its backend: split gives the key and the backend key"] = function()
    T.eq(select(1, sticky.split("k1|b2")), "k1")
    T.eq(select(2, sticky.split("k1|b2")), "b2")
    T.eq(select(1, sticky.split("k1")), "k1")
    T.is_nil(select(2, sticky.split("k1")))
    T.is_nil(sticky.split(nil))
    local a = sticky.new(entry(1), "balanced")
    local other = entry(1)
    other.name = "c"
    local b = sticky.new(other, "balanced")
    T.truthy(a.backend_key ~= b.backend_key, "backends have distinct keys")
end

cases["a hostile cookie name or path falls back to safe defaults"] = function()
    local inst = sticky.new(entry(1, { name = "a;b", path = "/x; Domain=evil" }), "balanced")
    T.eq(inst:cookie("v"), "INGRESSCOOKIE=v; Path=/; HttpOnly")
end

return cases
