-- The shared dict layout and its writer (ingressd.store), on a test dict.

local T = require("tests.assert")
local store = require("ingressd.store")
local cjson = require("cjson.safe")

local function b(name, addresses)
    local eps = {}
    for i, a in ipairs(addresses or {}) do
        eps[i] = string.format('{"address":"%s","port":"80"}', a)
    end
    return { name = name,
             raw = string.format('{"name":"%s","endpoints":[%s]}', name, table.concat(eps, ",")) }
end

local function log_entry(dict, v)
    return dict:get(store.LOG_PREFIX .. v)
end

local cases = {}

cases["empty dict: version 0, no names, list is []"] = function()
    local dict = T.fresh_dict()
    T.eq(store.version(dict), 0)
    T.eq(#store.names(dict), 0)
    T.eq(store.list(dict), "[]")
end

cases["upsert stores backends, sorted index, log entry, then bumps the version"] = function()
    local dict = T.fresh_dict()
    local v, n = store.write(dict, "upsert", { b("c", { "1.1.1.1" }), b("a"), b("b") })
    T.eq(v, 1)
    T.eq(n, 3)
    T.eq(store.version(dict), 1)
    T.eq(store.names(dict), { "a", "b", "c" })
    T.eq(cjson.decode(log_entry(dict, 1)), { "c", "a", "b" })
    T.eq(store.list(dict), "[" .. b("a").raw .. "," .. b("b").raw .. ","
        .. b("c", { "1.1.1.1" }).raw .. "]")
    T.eq(store.get(dict, "c"), b("c", { "1.1.1.1" }).raw)
end

cases["upsert keeps the other backends and logs only the changed ones"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a"), b("b"), b("c") })
    local v, n = store.write(dict, "upsert", { b("b", { "2.2.2.2" }), b("c"), b("d") })
    T.eq(v, 2)
    T.eq(n, 2, "c is unchanged")
    T.eq(cjson.decode(log_entry(dict, 2)), { "b", "d" })
    T.eq(store.names(dict), { "a", "b", "c", "d" })
    T.eq(store.get(dict, "b"), b("b", { "2.2.2.2" }).raw)
end

cases["a write that changes nothing keeps the version"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a"), b("b") })
    local v, n = store.write(dict, "upsert", { b("b") })
    T.eq(v, 1)
    T.eq(n, 0)
    v, n = store.write(dict, "replace", { b("a"), b("b") })
    T.eq(v, 1)
    T.eq(n, 0)
    T.is_nil(log_entry(dict, 2))
end

cases["replace removes the backends not sent and logs a full replace"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a"), b("b"), b("c") })
    local v, n = store.write(dict, "replace", { b("b"), b("z") })
    T.eq(v, 2)
    T.eq(n, 3, "z added, a and c removed, b unchanged")
    T.eq(log_entry(dict, 2), store.FULL)
    T.eq(store.names(dict), { "b", "z" })
    T.is_nil(store.get(dict, "a"))
    T.is_nil(store.get(dict, "c"))
    v = store.write(dict, "replace", {})
    T.eq(v, 3)
    T.eq(store.list(dict), "[]")
end

cases["changes() unions the names of the versions in between"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a"), b("b") })
    store.write(dict, "upsert", { b("a", { "1.1.1.1" }) })
    store.write(dict, "upsert", { b("c") })
    T.eq(store.changes(dict, 1, 3), { a = true, c = true })
    T.eq(store.changes(dict, 2, 3), { c = true })
    T.eq(store.changes(dict, 3, 3), {})
end

cases["changes() asks for a full load: start, full replace, too far behind, lost entry"] =
function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { b("a") })
    store.write(dict, "replace", { b("b") })
    store.write(dict, "upsert", { b("c") })
    T.is_nil(store.changes(dict, 0, 3), "from version 0")
    T.is_nil(store.changes(dict, 1, 3), "over a full replace")
    T.eq(store.changes(dict, 2, 3), { c = true })
    T.is_nil(store.changes(dict, 4, 3), "version went backwards")
    T.is_nil(store.changes(dict, 2, 3, 0), "further behind than the log size")
    dict:delete(store.LOG_PREFIX .. 3)
    T.is_nil(store.changes(dict, 2, 3), "log entry gone")
end

cases["an upsert of very many backends is logged as a full reload"] = function()
    local dict = T.fresh_dict()
    local items = {}
    for i = 1, store.LOG_MAX_NAMES + 1 do
        items[i] = b("n" .. i)
    end
    store.write(dict, "upsert", items)
    store.write(dict, "upsert", { b("n1", { "1.1.1.1" }) })
    T.eq(log_entry(dict, 1), store.FULL)
    T.eq(log_entry(dict, 2), '["n1"]')
end

cases["the log keeps only the last log_size entries"] = function()
    local dict = T.fresh_dict()
    for i = 1, 20 do
        store.write(dict, "upsert", { b("a", { "10.0.0." .. i }) }, { log_size = 8 })
    end
    T.eq(store.version(dict), 20)
    for v = 1, 12 do
        T.is_nil(log_entry(dict, v), "entry " .. v)
    end
    for v = 13, 20 do
        T.eq(log_entry(dict, v), '["a"]', "entry " .. v)
    end
end

cases["a held lock makes the writer wait, then give up with 503"] = function()
    local dict = T.fresh_dict()
    dict:set(store.LOCK_KEY, 1, 10)
    local v, err, status = store.write(dict, "upsert", { b("a") }, { lock_timeout = 0.02 })
    T.is_nil(v)
    T.eq(status, 503)
    T.contains(err, "still running")
    T.eq(store.version(dict), 0)
    dict:delete(store.LOCK_KEY)
    T.eq(store.write(dict, "upsert", { b("a") }), 1, "lock released")
    T.is_nil(dict:get(store.LOCK_KEY), "writer releases the lock")
end

cases["a full dict is reported and the stored set is left as it was"] = function()
    local dict = T.fresh_dict("ingressd_small")
    local v = store.write(dict, "upsert", { b("keep", { "1.1.1.1" }) })
    T.eq(v, 1)
    local before = store.list(dict)
    local big = {}
    for i = 1, 200 do
        big[i] = { name = "big-" .. i, raw = '{"name":"big-' .. i .. '","pad":"'
            .. string.rep("x", 400) .. '"}' }
    end
    big[#big + 1] = b("keep", { "9.9.9.9" })
    local res, err, status = store.write(dict, "upsert", big)
    T.is_nil(res)
    T.eq(status, 500)
    T.contains(err, "shared dict is full")
    T.eq(store.list(dict), before, "nothing stored")
    T.is_nil(store.get(dict, "big-1"))
    T.is_nil(dict:get(store.LOCK_KEY), "lock released")
    -- the version may move on (so that readers re-read), the content may not
    T.truthy(store.version(dict) >= 1)
    res = store.write(dict, "upsert", { b("keep", { "2.2.2.2" }) })
    T.truthy(res ~= nil, "dict still writable after the failure")
end

return cases
