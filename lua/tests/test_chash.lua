-- Consistent hashing: stable per key, even enough, minimal movement on membership changes.

local T = require("tests.assert")
local chash = require("ingressd.balancer.chash")

local function entry(addresses, hash_by)
    local endpoints = {}
    for i, a in ipairs(addresses) do
        endpoints[i] = { address = a, port = 8000, key = a .. ":8000" }
    end
    local config = { ["upstream-hash-by"] = hash_by or "$request_uri" }
    return { name = "b", endpoints = endpoints, n = #endpoints,
             backend = { upstreamHashByConfig = config } }
end

local function range(n)
    local out = {}
    for i = 1, n do
        out[i] = "10.0.0." .. i
    end
    return out
end

local cases = {}

cases["the same key always maps to the same endpoint, in any instance"] = function()
    local a, b = chash.new(entry(range(5))), chash.new(entry(range(5)))
    for i = 1, 200 do
        local key = "/user/" .. i
        T.eq(a:find(key).key, b:find(key).key, key)
        T.eq(a:find(key).key, a:find(key).key, key)
    end
end

cases["keys spread over every endpoint"] = function()
    local inst = chash.new(entry(range(4)))
    local counts = {}
    for i = 1, 4000 do
        local ep = inst:find("k" .. i)
        counts[ep.address] = (counts[ep.address] or 0) + 1
    end
    for _, address in ipairs(range(4)) do
        local c = counts[address] or 0
        T.truthy(c > 600 and c < 1400, address .. " got " .. c .. " of 4000")
    end
end

cases["adding an endpoint moves only keys to the new one"] = function()
    local inst = chash.new(entry(range(4)))
    local before = {}
    for i = 1, 2000 do
        before[i] = inst:find("k" .. i).address
    end
    inst:sync(entry(range(5)))
    local moved = 0
    for i = 1, 2000 do
        local now = inst:find("k" .. i).address
        if now ~= before[i] then
            moved = moved + 1
            T.eq(now, "10.0.0.5", "a key moved between old endpoints")
        end
    end
    T.truthy(moved > 200 and moved < 700, "moved " .. moved .. " of 2000 (expected ~1/5)")
end

cases["removing an endpoint moves only its keys"] = function()
    local inst = chash.new(entry(range(5)))
    local before = {}
    for i = 1, 2000 do
        before[i] = inst:find("k" .. i).address
    end
    inst:sync(entry({ "10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5" }))
    for i = 1, 2000 do
        if before[i] ~= "10.0.0.3" then
            T.eq(inst:find("k" .. i).address, before[i], "k" .. i)
        end
    end
end

cases["a retry skips endpoints that failed"] = function()
    local inst = chash.new(entry(range(3)))
    local first = inst:find("x")
    local second = inst:find("x", { [first.key] = true })
    T.truthy(second.key ~= first.key, "retry went to the failed endpoint")
    local third = inst:find("x", { [first.key] = true, [second.key] = true })
    T.truthy(third.key ~= first.key and third.key ~= second.key, "third try repeats")
end

cases["no endpoints gives nil"] = function()
    T.is_nil(chash.new(entry({})):find("x"))
end

cases["parse_key splits variables and text"] = function()
    T.eq(chash.parse_key("$request_uri"), { { var = "request_uri" } })
    T.eq(chash.parse_key("${http_x_user}-a$host"),
         { { var = "http_x_user" }, { text = "-a" }, { var = "host" } })
    T.is_nil(chash.parse_key("plain"))
    T.is_nil(chash.parse_key(""))
end

cases["the key is read from nginx variables"] = function()
    local inst = chash.new(entry(range(3), "${request_method}-$uri"))
    T.eq(inst:key(), "GET-/lua-tests")
    T.eq(inst:balance().key, inst:find("GET-/lua-tests").key)
end

return cases
