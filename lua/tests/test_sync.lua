-- A worker's view (ingressd.balancer): full load, change-log application, full-replace and
-- too-far-behind rebuilds, reuse of unchanged entries; and parsing of $upstream_addr on retries.

local T = require("tests.assert")
local store = require("ingressd.store")
local balancer = require("ingressd.balancer")

local function b(name, addresses, extra)
    local eps = {}
    for i, a in ipairs(addresses or {}) do
        eps[i] = string.format('{"address":"%s","port":"80"}', a)
    end
    return { name = name, raw = string.format('{"name":"%s","endpoints":[%s]%s}', name,
                                              table.concat(eps, ","), extra or "") }
end

local function addresses(view, name)
    local entry = view.backends[name]
    if entry == nil then
        return nil
    end
    local out = {}
    for i, ep in ipairs(entry.endpoints) do
        out[i] = ep.address .. ":" .. ep.port
    end
    return table.concat(out, " ")
end

local function names(view)
    local out = {}
    for name in pairs(view.backends) do
        out[#out + 1] = name
    end
    table.sort(out)
    return table.concat(out, " ")
end

local cases = {}

cases["a new view loads everything"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a", { "10.0.0.1", "10.0.0.2" }), b("b") })
    store.write(dict, "upsert", { b("c", { "10.0.0.3" }) })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    T.eq(view.version, 2)
    T.eq(view.stats.full_loads, 1)
    T.eq(names(view), "a b c")
    T.eq(addresses(view, "a"), "10.0.0.1:80 10.0.0.2:80")
    T.eq(view.backends.a.endpoints[1].key, "10.0.0.1:80")
    T.eq(view.backends.b.n, 0)
    T.eq(view.backends.a.algorithm, "round_robin")
end

cases["an empty dict leaves an empty view at version 0"] = function()
    local view = balancer.new_view(T.fresh_dict())
    balancer.sync(view)
    T.eq(view.version, 0)
    T.eq(names(view), "")
end

cases["upserts are applied from the log, re-decoding only the changed backends"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a", { "10.0.0.1" }), b("b", { "10.0.0.2" }) })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    local entry_b = view.backends.b
    local decoded = view.stats.decoded
    store.write(dict, "upsert", { b("a", { "10.0.0.9" }) })
    store.write(dict, "upsert", { b("c", { "10.0.0.3" }) })
    balancer.sync(view)
    T.eq(view.version, 3)
    T.eq(view.stats.full_loads, 1, "no full load")
    T.eq(view.stats.incremental, 1)
    T.eq(view.stats.decoded - decoded, 2, "a and c decoded")
    T.truthy(view.backends.b == entry_b, "b kept as is")
    T.eq(addresses(view, "a"), "10.0.0.9:80")
    T.eq(names(view), "a b c")
end

cases["the algorithm instance survives an endpoint change"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a", { "10.0.0.1", "10.0.0.2", "10.0.0.3" }) })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    local impl = view.backends.a.impl
    store.write(dict, "upsert", { b("a", { "10.0.0.1", "10.0.0.2", "10.0.0.4" }) })
    balancer.sync(view)
    T.truthy(view.backends.a.impl == impl, "same instance")
    T.eq(impl.endpoints[3].address, "10.0.0.4", "instance sees the new endpoints")
end

cases["a full replace rebuilds but keeps unchanged entries"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a", { "10.0.0.1" }), b("b", { "10.0.0.2" }) })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    local entry_a = view.backends.a
    store.write(dict, "replace", { b("a", { "10.0.0.1" }), b("z", { "10.0.0.26" }) })
    balancer.sync(view)
    T.eq(view.version, 2)
    T.eq(view.stats.full_loads, 2)
    T.eq(names(view), "a z")
    T.truthy(view.backends.a == entry_a, "unchanged text -> same entry, no decode")
end

cases["removed backends disappear through the log"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a"), b("b") })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    -- a removal logged by name (a rollback publishes names this way)
    dict:delete(store.BACKEND_PREFIX .. "b")
    dict:set(store.LOG_PREFIX .. 2, '["b"]')
    dict:set(store.VERSION_KEY, 2)
    balancer.sync(view)
    T.eq(view.stats.full_loads, 1)
    T.eq(names(view), "a")
end

cases["a worker too far behind rebuilds everything"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a", { "10.0.0.1" }), b("b", { "10.0.0.2" }) })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    for i = 1, store.LOG_SIZE + 5 do
        store.write(dict, "upsert", { b("a", { "10.0.1." .. (i % 250) }) })
    end
    store.write(dict, "upsert", { b("c") })
    balancer.sync(view)
    T.eq(view.version, store.LOG_SIZE + 7)
    T.eq(view.stats.full_loads, 2)
    T.eq(view.stats.incremental, 0)
    T.eq(names(view), "a b c")
    T.eq(addresses(view, "a"), "10.0.1." .. ((store.LOG_SIZE + 5) % 250) .. ":80")
end

cases["unknown load-balance falls back to round robin, extra keys kept"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", {
        b("a", { "10.0.0.1" }, ',"load-balance":"least_conn","sessionAffinityConfig":{"name":"c"}'),
    })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    T.eq(view.backends.a.algorithm, "round_robin")
    T.eq(view.backends.a.backend.sessionAffinityConfig.name, "c")
end

cases["numeric ports, IPv6 keys and endpoints that fail to parse"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { { name = "a", raw = '{"name":"a","endpoints":['
        .. '{"address":"10.0.0.1","port":8080},{"address":"::1","port":"81"}]}' } })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    T.eq(view.backends.a.endpoints[1].port, 8080)
    T.eq(view.backends.a.endpoints[2].key, "[::1]:81")
end

cases["parse_tried reads the peers of the current upstream group"] = function()
    local tried, count = balancer.parse_tried("127.0.1.1:8000 : ")
    T.eq(tried, { ["127.0.1.1:8000"] = true })
    T.eq(count, 1)
    tried, count = balancer.parse_tried("127.0.1.1:8000, 127.0.1.2:8000 : ")
    T.eq(tried, { ["127.0.1.1:8000"] = true, ["127.0.1.2:8000"] = true })
    T.eq(count, 2)
    tried, count = balancer.parse_tried("10.0.0.1:80 : 127.0.1.3:8000 : ")
    T.eq(tried, { ["127.0.1.3:8000"] = true }, "earlier group ignored")
    T.eq(count, 1)
    tried, count = balancer.parse_tried("[::1]:80, [::2]:80 : ")
    T.eq(tried, { ["[::1]:80"] = true, ["[::2]:80"] = true })
    T.eq(count, 2)
    tried, count = balancer.parse_tried("")
    T.eq(tried, {})
    T.eq(count, 0)
    tried, count = balancer.parse_tried(nil)
    T.eq(tried, {})
    T.eq(count, 0)
end

return cases
