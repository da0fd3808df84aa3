-- Round robin order, wrap-around, updates and the skip of failed peers on retries.

local T = require("tests.assert")
local rr = require("ingressd.balancer.round_robin")

local function entry(n)
    local endpoints = {}
    for i = 1, n do
        endpoints[i] = { address = "127.0.1." .. i, port = 8000, key = "127.0.1." .. i .. ":8000" }
    end
    return { name = "b", endpoints = endpoints, n = n }
end

local function picks(inst, count, tried)
    local out = {}
    for i = 1, count do
        local ep = inst:balance(tried)
        out[i] = ep and ep.address or "nil"
    end
    return table.concat(out, " ")
end

local cases = {}

cases["visits every endpoint in order and wraps around"] = function()
    local inst = rr.new(entry(3), 1)
    T.eq(picks(inst, 7), "127.0.1.1 127.0.1.2 127.0.1.3 127.0.1.1 127.0.1.2 127.0.1.3 127.0.1.1")
end

cases["starts where asked"] = function()
    local inst = rr.new(entry(3), 3)
    T.eq(picks(inst, 4), "127.0.1.3 127.0.1.1 127.0.1.2 127.0.1.3")
end

cases["random start is a valid endpoint and then plain order"] = function()
    for _ = 1, 50 do
        local inst = rr.new(entry(4))
        T.truthy(inst.next >= 1 and inst.next <= 4, "start in range")
        local first = inst:balance()
        local second = inst:balance()
        local i = tonumber(first.address:match("%d+$"))
        T.eq(tonumber(second.address:match("%d+$")), i % 4 + 1, "next after " .. first.address)
    end
end

cases["single endpoint always wins"] = function()
    local inst = rr.new(entry(1))
    T.eq(picks(inst, 3), "127.0.1.1 127.0.1.1 127.0.1.1")
end

cases["no endpoints gives nil"] = function()
    local inst = rr.new(entry(0))
    T.is_nil(inst:balance())
    T.is_nil(inst:balance({ ["127.0.1.1:8000"] = true }))
end

cases["retry skips the failed peer"] = function()
    local inst = rr.new(entry(3), 1)
    T.eq(inst:balance().address, "127.0.1.1")
    -- the request failed on .1: its retry takes the next in turn, .2
    T.eq(inst:balance({ ["127.0.1.1:8000"] = true }).address, "127.0.1.2")
    -- this request failed on .2: skip it
    T.eq(inst:balance({ ["127.0.1.2:8000"] = true }).address, "127.0.1.3")
end

cases["retries do not move the rotation of first tries"] = function()
    local inst = rr.new(entry(3), 1)
    T.eq(inst:balance().address, "127.0.1.1")
    T.eq(inst:balance({ ["127.0.1.1:8000"] = true }).address, "127.0.1.2")
    T.eq(inst:balance({ ["127.0.1.1:8000"] = true, ["127.0.1.2:8000"] = true }).address,
         "127.0.1.3")
    T.eq(picks(inst, 3), "127.0.1.2 127.0.1.3 127.0.1.1")
end

cases["retry skips every peer already tried and wraps"] = function()
    local inst = rr.new(entry(3), 2)
    local ep = inst:balance({ ["127.0.1.2:8000"] = true, ["127.0.1.3:8000"] = true })
    T.eq(ep.address, "127.0.1.1")
end

cases["retry when every peer failed takes the next in turn"] = function()
    local inst = rr.new(entry(2), 2)
    local ep = inst:balance({ ["127.0.1.1:8000"] = true, ["127.0.1.2:8000"] = true })
    T.eq(ep.address, "127.0.1.2")
    T.eq(inst:balance().address, "127.0.1.2")
end

cases["retry with one endpoint reuses it"] = function()
    local inst = rr.new(entry(1))
    T.eq(inst:balance({ ["127.0.1.1:8000"] = true }).address, "127.0.1.1")
end

cases["sync keeps the position and clamps when endpoints shrink"] = function()
    local inst = rr.new(entry(4), 1)
    T.eq(picks(inst, 2), "127.0.1.1 127.0.1.2")
    inst:sync(entry(5))
    T.eq(picks(inst, 2), "127.0.1.3 127.0.1.4")
    inst:sync(entry(2))
    T.eq(picks(inst, 3), "127.0.1.1 127.0.1.2 127.0.1.1")
    inst:sync(entry(0))
    T.is_nil(inst:balance())
    inst:sync(entry(2))
    T.eq(picks(inst, 2), "127.0.1.1 127.0.1.2")
end

return cases
