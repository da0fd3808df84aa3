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

-- Every index bucket's text, by key.
local function index_texts(dict, coll)
    local out = {}
    for b = 0, store.INDEX_BUCKETS - 1 do
        local key = coll.index_key .. ":" .. b
        out[key] = dict:get(key)
    end
    return out
end

local function changed_keys(before, after)
    local keys = {}
    for key in pairs(after) do
        if before[key] ~= after[key] then
            keys[#keys + 1] = key
        end
    end
    for key in pairs(before) do
        if after[key] == nil and before[key] ~= nil then
            keys[#keys + 1] = key
        end
    end
    table.sort(keys)
    return keys
end

cases["adding or removing one name rewrites one index bucket, whatever the size"] = function()
    local dict = T.fresh_dict()
    local routes = store.routes
    local many = {}
    for i = 1, 2000 do
        many[i] = item("h" .. i .. ".com")
    end
    routes:write(dict, "upsert", many)
    local before = index_texts(dict, routes)
    routes:write(dict, "upsert", { item("new.com") })
    local after = index_texts(dict, routes)
    local bucket = routes.index_key .. ":" .. (ngx.crc32_short("new.com") % store.INDEX_BUCKETS)
    T.eq(changed_keys(before, after), { bucket }, "an added name")
    routes:write(dict, "upsert", { item("h7.com", '{"host":"h7.com","x":1}') })
    T.eq(changed_keys(after, index_texts(dict, routes)), {}, "a changed text: no bucket")
    before = index_texts(dict, routes)
    routes:write(dict, "upsert", {}, { delete = { "h9.com" } })
    bucket = routes.index_key .. ":" .. (ngx.crc32_short("h9.com") % store.INDEX_BUCKETS)
    T.eq(changed_keys(before, index_texts(dict, routes)), { bucket }, "a removed name")
    local names = routes:names(dict)
    T.eq(#names, 2000)
    local seen = {}
    for _, name in ipairs(names) do
        seen[name] = true
    end
    T.truthy(seen["new.com"] and seen["h7.com"] and not seen["h9.com"])
end

cases["the index holds exactly the stored names after upserts, deletes and replaces"] =
function()
    local dict = T.fresh_dict()
    local routes = store.routes
    local want = {}
    local function check(what)
        local expected = {}
        for name in pairs(want) do
            expected[#expected + 1] = name
        end
        table.sort(expected)
        T.eq(routes:names(dict), expected, what)
        for _, name in ipairs(expected) do
            T.truthy(routes:get(dict, name), what .. ": " .. name .. " stored")
        end
    end
    local batch = {}
    for i = 1, 600 do
        batch[#batch + 1] = item("n" .. i .. ".com")
        want["n" .. i .. ".com"] = true
    end
    routes:write(dict, "upsert", batch)
    check("600 added")
    local deletes = {}
    for i = 1, 600, 3 do
        deletes[#deletes + 1] = "n" .. i .. ".com"
        want["n" .. i .. ".com"] = nil
    end
    routes:write(dict, "upsert", { item("n2.com", '{"host":"n2.com","v":2}') },
                 { delete = deletes })
    check("every third removed")
    local replace = {}
    want = {}
    for i = 500, 700 do
        replace[#replace + 1] = item("n" .. i .. ".com")
        want["n" .. i .. ".com"] = true
    end
    routes:write(dict, "replace", replace)
    check("replaced by 500-700")
    routes:write(dict, "replace", {})
    want = {}
    check("replaced by nothing")
    for b = 0, store.INDEX_BUCKETS - 1 do
        T.is_nil(dict:get(routes.index_key .. ":" .. b), "empty buckets are removed")
    end
end

cases["a failed write leaves the index as it was"] = function()
    local dict = T.fresh_dict("ingressd_small")
    local routes = store.routes
    routes:write(dict, "upsert", { item("keep.com"), item("other.com") })
    local before = index_texts(dict, routes)
    local big = { item("a.com") }
    for i = 1, 200 do
        big[#big + 1] = item("h" .. i .. ".com", '{"pad":"' .. string.rep("x", 400) .. '"}')
    end
    local v = routes:write(dict, "upsert", big, { delete = { "other.com" } })
    T.is_nil(v)
    T.eq(changed_keys(before, index_texts(dict, routes)), {})
    T.eq(routes:names(dict), { "keep.com", "other.com" })
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

cases["read() full load with names added and removed meanwhile hands over whole writes"] =
function()
    local dict = T.fresh_dict()
    local routes = store.routes
    local first = {}
    for i = 1, 300 do
        first[i] = item("h" .. i .. ".com", "v1")
    end
    routes:write(dict, "upsert", first)
    local state = { version = 0 }
    local reader = interfering(dict, "route:", function()
        routes:write(dict, "upsert", { item("h1.com", "v2"), item("late.com", "v2") },
                     { delete = { "h2.com", "h3.com" } })
    end)
    local v, items, full = routes:read(reader, state)
    T.eq(v, 2)
    T.truthy(full)
    T.eq(items["h1.com"], "v2")
    T.eq(items["late.com"], "v2", "a name added meanwhile")
    T.eq(items["h2.com"], false, "a name removed meanwhile")
    local n = 0
    for _, raw in pairs(items) do
        if raw then
            n = n + 1
        end
    end
    T.eq(n, 299)
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
