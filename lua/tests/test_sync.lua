-- A worker's view (ingressd.balancer): backends built on first use, change-log application,
-- full-replace and too-far-behind rebuilds, reuse of unchanged entries; and parsing of
-- $upstream_addr on retries.

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
    local entry = balancer.backend(view, name)
    if entry == nil then
        return nil
    end
    local out = {}
    for i, ep in ipairs(entry.endpoints) do
        out[i] = ep.address .. ":" .. ep.port
    end
    return table.concat(out, " ")
end

-- The names among `candidates` the view finds.
local function names(view, candidates)
    local out = {}
    for _, name in ipairs(candidates or { "a", "b", "c", "z" }) do
        if balancer.backend(view, name) ~= nil then
            out[#out + 1] = name
        end
    end
    return table.concat(out, " ")
end

local cases = {}

cases["a new view finds every stored backend, building each on first use"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a", { "10.0.0.1", "10.0.0.2" }), b("b") })
    store.write(dict, "upsert", { b("c", { "10.0.0.3" }) })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    T.eq(view.version, 2)
    T.eq(view.stats.full_loads, 1)
    T.eq(view.stats.decoded, 0, "nothing built before it is used")
    T.eq(addresses(view, "a"), "10.0.0.1:80 10.0.0.2:80")
    T.eq(view.stats.decoded, 1)
    T.eq(names(view), "a b c")
    T.eq(balancer.backend(view, "a").endpoints[1].key, "10.0.0.1:80")
    T.eq(balancer.backend(view, "b").n, 0)
    T.eq(balancer.backend(view, "a").algorithm, "round_robin")
    T.eq(view.stats.decoded, 3, "each built once")
end

cases["an empty dict leaves an empty view at version 0"] = function()
    local view = balancer.new_view(T.fresh_dict())
    balancer.sync(view)
    T.eq(view.version, 0)
    T.eq(names(view), "")
end

cases["a backend not stored is remembered as missing until a write names it"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a") })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    T.is_nil(balancer.backend(view, "x"))
    T.eq(view.backends.x, false, "remembered")
    store.write(dict, "upsert", { b("x", { "10.0.0.7" }) })
    balancer.sync(view)
    T.eq(addresses(view, "x"), "10.0.0.7:80")
end

cases["upserts are applied from the log, re-decoding only the changed backends in use"] =
function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a", { "10.0.0.1" }), b("b", { "10.0.0.2" }) })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    local entry_b = balancer.backend(view, "b")
    balancer.backend(view, "a")
    local decoded = view.stats.decoded
    store.write(dict, "upsert", { b("a", { "10.0.0.9" }) })
    store.write(dict, "upsert", { b("c", { "10.0.0.3" }) })
    balancer.sync(view)
    T.eq(view.version, 3)
    T.eq(view.stats.full_loads, 1, "no full load")
    T.eq(view.stats.incremental, 1)
    T.eq(view.stats.decoded - decoded, 1, "a rebuilt at once")
    T.truthy(balancer.backend(view, "b") == entry_b, "b kept as is")
    T.eq(addresses(view, "a"), "10.0.0.9:80")
    T.eq(names(view), "a b c")
    T.eq(view.stats.decoded - decoded, 2, "c on first use")
end

cases["the algorithm instance survives an endpoint change"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a", { "10.0.0.1", "10.0.0.2", "10.0.0.3" }) })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    local impl = balancer.backend(view, "a").impl
    store.write(dict, "upsert", { b("a", { "10.0.0.1", "10.0.0.2", "10.0.0.4" }) })
    balancer.sync(view)
    T.truthy(balancer.backend(view, "a").impl == impl, "same instance")
    T.eq(impl.endpoints[3].address, "10.0.0.4", "instance sees the new endpoints")
end

cases["a full replace rebuilds but keeps unchanged entries"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a", { "10.0.0.1" }), b("b", { "10.0.0.2" }) })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    local entry_a = balancer.backend(view, "a")
    local impl_b = balancer.backend(view, "b").impl
    store.write(dict, "replace", { b("a", { "10.0.0.1" }), b("b", { "10.0.0.3" }),
                                   b("z", { "10.0.0.26" }) })
    balancer.sync(view)
    T.eq(view.version, 2)
    T.eq(view.stats.full_loads, 2)
    T.eq(names(view), "a b z")
    T.truthy(balancer.backend(view, "a") == entry_a, "unchanged text -> same entry, no decode")
    T.truthy(balancer.backend(view, "b").impl == impl_b, "changed text -> same instance")
    T.eq(addresses(view, "b"), "10.0.0.3:80")
end

cases["removed backends disappear through the log"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a"), b("b") })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    T.eq(names(view), "a b")
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
    T.eq(names(view), "a b")
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
    T.eq(balancer.backend(view, "a").algorithm, "round_robin")
    T.eq(balancer.backend(view, "a").backend.sessionAffinityConfig.name, "c")
end

cases["numeric ports, IPv6 keys and endpoints that fail to parse"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { { name = "a", raw = '{"name":"a","endpoints":['
        .. '{"address":"10.0.0.1","port":8080},{"address":"::1","port":"81"}]}' } })
    local view = balancer.new_view(dict)
    balancer.sync(view)
    T.eq(balancer.backend(view, "a").endpoints[1].port, 8080)
    T.eq(balancer.backend(view, "a").endpoints[2].key, "[::1]:81")
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
