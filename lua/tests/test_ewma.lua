-- EWMA with two random choices: the faster endpoint wins, scores decay, state survives syncs.

local T = require("tests.assert")
local ewma = require("ingressd.balancer.ewma")

local function entry(n)
    local endpoints = {}
    for i = 1, n do
        endpoints[i] = { address = "10.0.0." .. i, port = 80, key = "10.0.0." .. i .. ":80" }
    end
    return { name = "b", endpoints = endpoints, n = n }
end

-- An instance with a fake clock and a scripted random source.
local function instance(n, picks)
    local inst = ewma.new(entry(n))
    local clock = { t = 1000 }
    inst.now = function() return clock.t end
    local i = 0
    inst.random = function(lo, hi)
        i = i + 1
        local v = picks and picks[i] or lo
        T.truthy(v >= lo and v <= hi, "scripted pick out of range")
        return v
    end
    return inst, clock
end

local cases = {}

cases["of the two picked endpoints the one with the lower ewma wins"] = function()
    local inst = instance(3, { 1, 2, 1, 1 })
    inst:after_balance("10.0.0.1:80", 0.500)
    inst:after_balance("10.0.0.2:80", 0.010)
    -- picks 1 and (2 -> index 3 skipping 1? no: j=2 >= i=1 -> 3): endpoints 1 and 3
    T.eq(inst:balance().address, "10.0.0.3", "unmeasured beats slow")
    -- picks 1 and 2 (j=1 >= i=1 -> 2)
    T.eq(inst:balance().address, "10.0.0.2", "fast beats slow")
end

cases["a slow endpoint gets less traffic than a fast one"] = function()
    local inst = ewma.new(entry(3))
    local clock = { t = 1000 }
    inst.now = function() return clock.t end
    local latency = { ["10.0.0.1:80"] = 0.2, ["10.0.0.2:80"] = 0.01, ["10.0.0.3:80"] = 0.01 }
    local counts = {}
    for _ = 1, 3000 do
        local ep = inst:balance()
        counts[ep.address] = (counts[ep.address] or 0) + 1
        inst:after_balance(ep.key, latency[ep.key])
        clock.t = clock.t + 0.01
    end
    T.truthy((counts["10.0.0.1"] or 0) < 300, "slow endpoint got " .. (counts["10.0.0.1"] or 0))
    T.truthy((counts["10.0.0.2"] or 0) > 1000 and (counts["10.0.0.3"] or 0) > 1000,
             "fast endpoints share the load")
end

cases["scores decay towards zero with time"] = function()
    local inst, clock = instance(2)
    inst:after_balance("10.0.0.1:80", 1.0)
    T.eq(inst:score("10.0.0.1:80"), 1.0)
    clock.t = clock.t + ewma.DECAY_TIME
    local s = inst:score("10.0.0.1:80")
    T.truthy(math.abs(s - math.exp(-1)) < 1e-9, "after one decay time: " .. s)
end

cases["new measurements move the average"] = function()
    local inst, clock = instance(1)
    inst:after_balance("10.0.0.1:80", 1.0)
    clock.t = clock.t + 1
    inst:after_balance("10.0.0.1:80", 0.0)
    local w = math.exp(-1 / ewma.DECAY_TIME)
    T.truthy(math.abs(inst:score("10.0.0.1:80") - w) < 1e-9, "weighted average")
end

cases["retries avoid endpoints that failed"] = function()
    local inst = instance(3, { 1, 1 })
    local ep = inst:balance({ ["10.0.0.1:80"] = true, ["10.0.0.2:80"] = true })
    T.eq(ep.address, "10.0.0.3")
    ep = inst:balance({ ["10.0.0.1:80"] = true })
    T.truthy(ep.address ~= "10.0.0.1", "picked the failed endpoint")
end

cases["sync keeps scores of endpoints that stay and forgets removed ones"] = function()
    local inst = instance(3)
    inst:after_balance("10.0.0.1:80", 0.3)
    inst:after_balance("10.0.0.3:80", 0.3)
    inst:sync(entry(2))
    T.eq(inst:score("10.0.0.1:80"), 0.3)
    T.is_nil(inst.ewma["10.0.0.3:80"])
end

cases["zero or one endpoint"] = function()
    T.is_nil(instance(0):balance())
    T.eq(instance(1):balance().address, "10.0.0.1")
end

return cases
