-- A worker's copy of a collection (ingressd.replica): the version check of every request,
-- full and incremental reads handed to the owner's apply, a failed apply retried, nothing
-- applied while a write is under way.

local T = require("tests.assert")
local store = require("ingressd.store")
local replica = require("ingressd.replica")

local function item(name, text)
    return { name = name, raw = text or ("text of " .. name) }
end

-- A dict that counts the reader's gets.
local function counting(dict)
    local counter = { gets = 0 }
    counter.get = function(_, key)
        counter.gets = counter.gets + 1
        return dict:get(key)
    end
    return counter
end

-- A replica whose apply records each call and keeps the texts in r.texts.
local function recording(dict)
    local calls = {}
    local r = replica.new(store.routes, dict, function(self, items, full)
        calls[#calls + 1] = { items = items, full = full }
        if full then
            self.texts = {}
        end
        for name, raw in pairs(items) do
            self.texts[name] = raw or nil
        end
    end, { texts = {} })
    return r, calls
end

local cases = {}

cases["refresh loads everything first, then only what changed"] = function()
    local dict = T.fresh_dict()
    store.routes:write(dict, "upsert", { item("a.com"), item("b.com") })
    local r, calls = recording(dict)
    r:refresh()
    T.eq(r.version, 1)
    T.eq(#calls, 1)
    T.truthy(calls[1].full, "first load is full")
    T.eq(r.texts, { ["a.com"] = "text of a.com", ["b.com"] = "text of b.com" })
    store.routes:write(dict, "upsert", { item("c.com") }, { delete = { "a.com" } })
    r:refresh()
    T.eq(r.version, 2)
    T.eq(#calls, 2)
    T.truthy(not calls[2].full, "then incremental")
    T.eq(calls[2].items, { ["a.com"] = false, ["c.com"] = "text of c.com" })
    T.eq(r.texts, { ["b.com"] = "text of b.com", ["c.com"] = "text of c.com" })
    T.eq({ r.stats.full_loads, r.stats.incremental }, { 1, 1 })
end

cases["refresh with nothing new reads one key and calls nothing"] = function()
    local dict = T.fresh_dict()
    store.routes:write(dict, "upsert", { item("a.com") })
    local counter = counting(dict)
    local r, calls = recording(counter)
    r:refresh()
    local gets = counter.gets
    for _ = 1, 10 do
        r:refresh()
    end
    T.eq(counter.gets - gets, 10, "one get per refresh")
    T.eq(#calls, 1)
end

cases["a collection's replica ignores the other collections' writes"] = function()
    local dict = T.fresh_dict()
    store.routes:write(dict, "upsert", { item("a.com") })
    local r, calls = recording(dict)
    r:refresh()
    store.write(dict, "upsert", { item("backend-1") })
    store.certificates:write(dict, "upsert", { item("server:a.com", "uid") })
    r:refresh()
    T.eq(#calls, 1)
    T.eq(r.version, 1)
end

cases["a failing apply keeps the version, is logged, and is retried on the next refresh"] =
function()
    local dict = T.fresh_dict()
    store.routes:write(dict, "upsert", { item("a.com") })
    local fail = true
    local seen = 0
    local r = replica.new(store.routes, dict, function()
        seen = seen + 1
        if fail then
            error("cannot apply")
        end
    end)
    r:refresh() -- logged, not raised
    T.eq(r.version, 0)
    fail = false
    r:refresh()
    T.eq(r.version, 1)
    T.eq(seen, 2)
    T.eq(r.stats.full_loads, 1, "only the applied read counts")
end

cases["nothing is applied while a write is under way"] = function()
    local dict = T.fresh_dict()
    store.routes:write(dict, "upsert", { item("a.com") })
    local r, calls = recording(dict)
    r:refresh()
    local seq = dict:get(store.routes.seq_key)
    -- a writer half way through version 2: seq odd, version not yet moved
    dict:set(store.routes.seq_key, seq + 1)
    dict:set("route:a.com", "half")
    dict:set(store.routes.version_key, 2) -- as if a reader raced the version bump
    T.eq(r:sync(), false)
    r:refresh()
    T.eq(#calls, 1)
    T.eq(r.version, 1)
    -- the write ends
    dict:set(store.routes.log_prefix .. 2, '["a.com"]')
    dict:set(store.routes.seq_key, seq + 2)
    r:refresh()
    T.eq(r.version, 2)
    T.eq(r.texts, { ["a.com"] = "half" })
end

cases["the owner's fields and counters are kept"] = function()
    local r = replica.new(store.backends, T.fresh_dict(), function() end,
                          { backends = {}, stats = { decoded = 3 } })
    T.eq(r.stats, { decoded = 3, full_loads = 0, incremental = 0 })
    T.eq(r.backends, {})
    T.eq(r.version_key, store.VERSION_KEY)
end

cases["shared_dict names the missing lua_shared_dict"] = function()
    local saved = replica.DICT_NAME
    replica.DICT_NAME = "no_such_dict"
    local ok, err = pcall(replica.shared_dict)
    replica.DICT_NAME = saved
    T.truthy(not ok)
    T.contains(err, "lua_shared_dict no_such_dict is not defined")
    T.truthy(replica.shared_dict() == ngx.shared.ingressd_configuration)
end

return cases
