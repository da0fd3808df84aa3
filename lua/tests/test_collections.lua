-- Collections other than backends in the same shared dict (ingressd.store): their own keys,
-- index, log and version; removals by name; a prepare hook run under the lock.

local T = require("tests.assert")
local store = require("ingressd.store")
local cjson = require("cjson.safe")

local function item(name, text)
    return { name = name, raw = text or ('{"host":"' .. name .. '"}') }
end

local cases = {}

cases["each collection has its own keys, index and version"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { item("b1") })
    local v, n = store.routes:write(dict, "upsert", { item("a.com"), item("b.com") })
    T.eq({ v, n }, { 1, 2 })
    T.eq(store.version(dict), 1, "backends' version")
    T.eq(store.routes:version(dict), 1)
    T.eq(store.certificates:version(dict), 0)
    store.routes:write(dict, "upsert", { item("c.com") })
    T.eq(store.version(dict), 1, "a route does not move the backends' version")
    T.eq(store.routes:version(dict), 2)
    T.eq(store.names(dict), { "b1" })
    T.eq(store.routes:names(dict), { "a.com", "b.com", "c.com" })
    T.eq(dict:get("route:a.com"), '{"host":"a.com"}')
    T.eq(cjson.decode(dict:get("routes:log:2")), { "c.com" })
    T.eq(store.routes:changes(dict, 1, 2), { ["c.com"] = true })
    T.eq(store.routes:list(dict), '[{"host":"a.com"},{"host":"b.com"},{"host":"c.com"}]')
    T.is_nil(store.routes:get(dict, "b1"))
end

cases["delete removes the named items, logs them and ignores unknown names"] = function()
    local dict = T.fresh_dict()
    store.routes:write(dict, "upsert", { item("a.com"), item("b.com"), item("c.com") })
    local v, n = store.routes:write(dict, "upsert", { item("d.com") },
                                    { delete = { "b.com", "nope.com", "d.com" } })
    T.eq({ v, n }, { 2, 2 }, "d.com added (and not deleted: it is in the body), b.com removed")
    T.eq(store.routes:names(dict), { "a.com", "c.com", "d.com" })
    T.is_nil(dict:get("route:b.com"))
    T.eq(cjson.decode(dict:get("routes:log:2")), { "d.com", "b.com" })
    v, n = store.routes:write(dict, "upsert", {}, { delete = { "nope.com" } })
    T.eq({ v, n }, { 2, 0 }, "nothing to delete: same version")
end

cases["prepare runs under the lock and may refuse: nothing is written"] = function()
    local dict = T.fresh_dict()
    local saw_lock
    local v, n = store.certificates:write(dict, "upsert", nil, { prepare = function(d)
        saw_lock = d:get(store.LOCK_KEY) ~= nil
        return { item("x") }, {}
    end })
    T.eq({ v, n }, { 1, 1 })
    T.truthy(saw_lock, "lock held during prepare")
    local err, status
    v, err, status = store.certificates:write(dict, "upsert", { item("y") }, {
        prepare = function() return nil, "no such thing", 400 end })
    T.is_nil(v)
    T.eq({ err, status }, { "no such thing", 400 })
    T.eq(store.certificates:names(dict), { "x" })
    T.is_nil(dict:get(store.LOCK_KEY), "lock released after a refusal")
    v, err, status = store.certificates:write(dict, "upsert", {}, {
        prepare = function() error("boom") end })
    T.is_nil(v)
    T.eq(status, 500)
    T.contains(err, "internal error while storing certificates")
    T.is_nil(dict:get(store.LOCK_KEY), "lock released after an error")
end

cases["a replace of one collection leaves the others alone"] = function()
    local dict = T.fresh_dict()
    store.write(dict, "upsert", { item("b1"), item("b2") })
    store.routes:write(dict, "upsert", { item("a.com") })
    store.routes:write(dict, "replace", {})
    T.eq(store.names(dict), { "b1", "b2" })
    T.eq(store.routes:list(dict), "[]")
    T.eq(dict:get("routes:log:2"), '["a.com"]', "routes log a replace by name")
    store.write(dict, "replace", { item("b1") })
    T.eq(dict:get("log:2"), store.FULL, "backends log a replace as *, as before")
end

cases["a full dict rolls back a route write and bumps only the routes' version"] = function()
    local dict = T.fresh_dict("ingressd_small")
    store.routes:write(dict, "upsert", { item("keep.com") })
    local big = {}
    for i = 1, 200 do
        big[i] = item("h" .. i .. ".com", '{"pad":"' .. string.rep("x", 400) .. '"}')
    end
    local v, err, status = store.routes:write(dict, "upsert", big)
    T.is_nil(v)
    T.eq(status, 500)
    T.contains(err, 'while storing route "h')
    T.eq(store.routes:names(dict), { "keep.com" })
    T.eq(store.version(dict), 0)
end

-- A dict for the reader that runs `interfere` (once) right after the first get of an item:
-- what another worker's write between two of the reader's reads looks like.
local function interfering(dict, prefix, interfere)
    local fired = false
    return {
        get = function(_, key)
            local value = dict:get(key)
            if not fired and key:sub(1, #prefix) == prefix then
                fired = true
                interfere()
            end
            return value
        end,
    }
end

local function texts(items)
    local out = {}
    for name, raw in pairs(items) do
        out[name] = raw
    end
    return out
end

cases["read() hands over whole writes: a full load repaired after a write meanwhile"] =
function()
    local dict = T.fresh_dict()
    local routes = store.routes
    routes:write(dict, "upsert", { item("a.com", "a1"), item("b.com", "b1") })
    local state = { version = 0 }
    local reader = interfering(dict, "route:", function()
        routes:write(dict, "upsert", { item("a.com", "a2"), item("b.com", "b2") })
    end)
    local v, items, full = routes:read(reader, state)
    T.eq(v, 2)
    T.truthy(full)
    T.eq(texts(items), { ["a.com"] = "a2", ["b.com"] = "b2" }, "never a1 with b2")
    T.is_nil(state.pending)
    state.version = v
    T.is_nil(routes:read(dict, state), "up to date")
end

cases["read() waits while a write is under way and keeps what it read"] = function()
    local dict = T.fresh_dict()
    local routes = store.routes
    routes:write(dict, "upsert", { item("a.com", "a1"), item("b.com", "b1") })
    local state = { version = 1 }
    routes:write(dict, "upsert", { item("a.com", "a2") })
    -- a writer of version 3 is half way: seq odd, a.com written, b.com not yet
    local seq = dict:get(routes.seq_key)
    local reader = interfering(dict, "route:", function()
        dict:set(routes.seq_key, seq + 1)
        dict:set("route:a.com", "a3")
    end)
    T.is_nil(routes:read(reader, state), "nothing while the write is under way")
    T.truthy(state.pending, "what was read is kept")
    T.is_nil(routes:read(dict, state), "still under way")
    -- the writer finishes version 3
    dict:set("route:b.com", "b3")
    dict:set(routes.log_prefix .. 3, '["a.com","b.com"]')
    dict:set(routes.version_key, 3)
    dict:set(routes.seq_key, seq + 2)
    local v, items, full = routes:read(dict, state)
    T.eq(v, 3)
    T.truthy(not full)
    T.eq(texts(items), { ["a.com"] = "a3", ["b.com"] = "b3" })
end

cases["read() reports removals and every write bumps the sequence to an even number"] =
function()
    local dict = T.fresh_dict()
    local routes = store.routes
    routes:write(dict, "upsert", { item("a.com"), item("b.com") })
    T.eq(dict:get(routes.seq_key), 2)
    routes:write(dict, "upsert", {}, { delete = { "a.com" } })
    routes:write(dict, "upsert", { item("b.com") }) -- no change: the sequence moves anyway
    T.eq(dict:get(routes.seq_key), 6)
    dict:set(routes.seq_key, 7) -- a writer died half way
    routes:write(dict, "upsert", { item("c.com") })
    T.eq(dict:get(routes.seq_key), 10, "odd left behind: the next odd, then even")
    local v, items = routes:read(dict, { version = 1 })
    T.eq(v, 3)
    T.eq(texts(items), { ["a.com"] = false, ["c.com"] = '{"host":"c.com"}' })
end

return cases
