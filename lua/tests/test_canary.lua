-- Canary traffic shaping: header, then cookie, then weight (ingress-nginx's precedence).

local T = require("tests.assert")
local balancer = require("ingressd.balancer")

local function policy(p)
    return balancer.shaping_of({ noServer = true, trafficShapingPolicy = p })
end

local function never() error("random must not be drawn") end

local cases = {}

cases["header always / never decide before cookie and weight"] = function()
    local p = policy({ header = "X-Canary", cookie = "canary", weight = 100 })
    T.eq(p.header_var, "http_x_canary")
    T.eq(balancer.canary_matches(p, { http_x_canary = "always" }, never), true)
    T.eq(balancer.canary_matches(p, { http_x_canary = "never", cookie_canary = "always" }, never),
         false)
end

cases["another header value falls through to the cookie, then the weight"] = function()
    local p = policy({ header = "X-Canary", cookie = "canary", weight = 0 })
    T.eq(balancer.canary_matches(p, { http_x_canary = "maybe", cookie_canary = "always" }, never),
         true)
    T.eq(balancer.canary_matches(p, { cookie_canary = "never" }, never), false)
    T.eq(balancer.canary_matches(p, {}, never), false)
end

cases["header value must match exactly when set"] = function()
    local p = policy({ header = "X-Region", headerValue = "eu", weight = 0 })
    T.eq(balancer.canary_matches(p, { http_x_region = "eu" }, never), true)
    T.eq(balancer.canary_matches(p, { http_x_region = "always" }, never), false)
end

cases["header pattern is a regex"] = function()
    local p = policy({ header = "X-Region", headerPattern = "^(eu|us)-", weight = 0 })
    T.eq(balancer.canary_matches(p, { http_x_region = "eu-west" }, never), true)
    T.eq(balancer.canary_matches(p, { http_x_region = "ap-south" }, never), false)
end

cases["weight out of the total"] = function()
    local p = policy({ weight = 20, weightTotal = 100 })
    T.eq(balancer.canary_matches(p, {}, function(n) T.eq(n, 100) return 20 end), true)
    T.eq(balancer.canary_matches(p, {}, function() return 21 end), false)
    p = policy({ weight = 1, weightTotal = 1000 })
    T.eq(balancer.canary_matches(p, {}, function(n) T.eq(n, 1000) return 1 end), true)
end

cases["only canary backends have a policy"] = function()
    T.is_nil(balancer.shaping_of({ trafficShapingPolicy = { weight = 10 } }))
    T.is_nil(balancer.shaping_of({ noServer = true }))
end

cases["algorithm precedence: affinity, then hash, then load-balance"] = function()
    T.eq(balancer.algorithm_of({}), "round_robin")
    T.eq(balancer.algorithm_of({ ["load-balance"] = "ewma" }), "ewma")
    T.eq(balancer.algorithm_of({ ["load-balance"] = "ewma",
                                 upstreamHashByConfig = { ["upstream-hash-by"] = "$uri" } }),
         "chash")
    T.eq(balancer.algorithm_of({ upstreamHashByConfig = { ["upstream-hash-by"] = "" } }),
         "round_robin")
    T.eq(balancer.algorithm_of({ sessionAffinityConfig = { name = "cookie", mode = "persistent" },
                                 upstreamHashByConfig = { ["upstream-hash-by"] = "$uri" } }),
         "sticky_persistent")
    T.eq(balancer.algorithm_of({ sessionAffinityConfig = { name = "cookie" } }), "sticky_balanced")
end

return cases
