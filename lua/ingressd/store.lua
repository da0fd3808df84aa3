-- ingressd.store: collections of named JSON texts in the shared dict, their writer and readers.
--
-- A collection (backends, routes, certificates) is a set of items keyed by a name, each a
-- verbatim text, with its own index, change log and version. Keys of a collection with
-- prefixes (item, index, log, version) = ("backend:", "index", "log:", "version") for
-- backends (the layout before other collections existed), ("route:", "routes:index",
-- "routes:log:", "routes:version") for routes, ("certificate:", ...) likewise:
--   <item><name>      verbatim text of one item
--   <index>:<b>       the index of names in INDEX_BUCKETS buckets: JSON array of the names
--                     whose crc32 % INDEX_BUCKETS is b, in no order (absent: none); a write
--                     rewrites only the buckets of names it adds or removes
--   <log><version>    what changed at <version>: a JSON array of names, or "*" for a full
--                     replace (PUT) or more than LOG_MAX_NAMES changes (readers then reload
--                     everything, re-decoding only items whose text changed); the last
--                     `log_size` entries are kept
--   <version>         integer, bumped once per write that changed something
--   <seq>             write sequence: odd while a write of the collection is under way, even
--                     otherwise (a seqlock: Collection:read() uses it, see below)
--   "lock"            one writer lock for every collection (safe_add with a TTL)
--
-- Each collection has its own version so that a reader checks one number for what it reads:
-- the balancer's "version" does not move when a route changes, nor the router's when an
-- endpoint does (endpoint churn is the frequent change).
--
-- Writer (configuration endpoint): seq odd -> items -> removals -> index buckets -> log ->
-- version -> seq even, each step O(what changed) (a replace also lists the stored names), so
-- a reader that sees version V finds all data of V. Readers (per worker) compare the version
-- with their own and read changes(from, to) or everything (all_names + get).
--
-- Workers are processes: a reader may read an item while a write is under way and get the text
-- of the next version while the other items of that write are still old. Collection:read()
-- (router, certificates) therefore reads the texts first and hands them over only when no
-- write ran meanwhile (same even seq before and after); when one did, it re-reads what the
-- log says that write changed (a failed write publishes what it touched too) and checks
-- again, so a long full load is repaired, not restarted, and the caller never applies half
-- of a write. The balancer reads backends directly (each backend stands alone).
--
-- Only safe_set/safe_add are used: nothing of ours is ever evicted by the LRU; a full dict is
-- reported as an error and the write is rolled back.
--
-- The module-level functions (version, names, get, list, changes, write) are those of the
-- backends collection, as before; store.routes and store.certificates are the others.

local cjson = require("cjson.safe")

local ngx = ngx
local type, ipairs, pairs, tostring, format, setmetatable, pcall =
    type, ipairs, pairs, tostring, string.format, setmetatable, pcall
local sort, concat = table.sort, table.concat
local decode, encode = cjson.decode, cjson.encode

local _M = {}

_M.BACKEND_PREFIX = "backend:"
_M.LOG_PREFIX = "log:"
_M.INDEX_KEY = "index"
_M.VERSION_KEY = "version"
_M.LOCK_KEY = "lock"
_M.FULL = "*"
_M.LOG_SIZE = 256
_M.LOG_MAX_NAMES = 512  -- bounds a log entry: 256 entries x 512 names stays well under 64m
_M.LOCK_TTL = 30        -- seconds: a writer that died frees the lock after this
_M.LOCK_TIMEOUT = 5     -- seconds a writer waits for the lock
_M.INDEX_BUCKETS = 256  -- keys the index of names is spread over (~40 names each at 10,000)

local LOCK_KEY, FULL, INDEX_BUCKETS = _M.LOCK_KEY, _M.FULL, _M.INDEX_BUCKETS
local crc32 = ngx.crc32_short

local function encode_names(names)
    if #names == 0 then
        return "[]" -- cjson would say {}
    end
    return encode(names)
end

local Collection = {}
Collection.__index = Collection

-- spec: {name = "routes" (for messages), what = "route" (one item, for messages),
--        item_prefix, index_key, log_prefix, version_key, seq_key,
--        log_replace_by_name (a replace that changes at most LOG_MAX_NAMES items logs their
--        names rather than "*", so that readers apply it incrementally)}
function _M.collection(spec)
    return setmetatable({
        name = spec.name,
        what = spec.what,
        item_prefix = spec.item_prefix,
        index_key = spec.index_key,
        log_prefix = spec.log_prefix,
        version_key = spec.version_key,
        seq_key = spec.seq_key,
        log_replace_by_name = spec.log_replace_by_name or false,
    }, Collection)
end

-- ----------------------------------------------------------------------------- readers

function Collection:version(dict)
    return dict:get(self.version_key) or 0
end

-- The index is INDEX_BUCKETS keys <index>:<b>, each a JSON array of the names whose
-- ngx.crc32_short(name) % INDEX_BUCKETS is b (in no order): a write rewrites the buckets of the
-- names it adds or removes only, so its cost does not grow with the collection. A reader that
-- reads the buckets while a write replaces some sees each bucket whole, old or new; the names
-- it may miss or see too many are those of that write, which its log entry names.
local function bucket_key(self, name)
    return self.index_key .. ":" .. (crc32(name) % INDEX_BUCKETS)
end

local function decode_bucket(self, raw)
    if raw == nil then
        return {}
    end
    local names = decode(raw)
    if type(names) ~= "table" then
        ngx.log(ngx.ERR, "ingressd: corrupt ", self.what, " index in the shared dict")
        return {}
    end
    return names
end

-- Array of every name, in no particular order.
function Collection:all_names(dict)
    local names, n = {}, 0
    local prefix = self.index_key .. ":"
    for b = 0, INDEX_BUCKETS - 1 do
        local raw = dict:get(prefix .. b)
        if raw ~= nil then
            for _, name in ipairs(decode_bucket(self, raw)) do
                n = n + 1
                names[n] = name
            end
        end
    end
    return names
end

-- Sorted array of every name.
function Collection:names(dict)
    local names = self:all_names(dict)
    sort(names)
    return names
end

function Collection:get(dict, name)
    return (dict:get(self.item_prefix .. name))
end

-- JSON array of every item (each text as stored), sorted by name ("[]" when empty).
function Collection:list(dict)
    local parts, n = {}, 0
    local prefix = self.item_prefix
    for _, name in ipairs(self:names(dict)) do
        local raw = dict:get(prefix .. name)
        if raw ~= nil then
            n = n + 1
            parts[n] = raw
        end
    end
    return "[" .. concat(parts, ",") .. "]"
end

-- Set {name = true} of the items changed in versions (from, to], or nil when the caller must
-- reload everything: a full replace in the range, or a log entry already dropped.
function Collection:changes(dict, from, to, log_size)
    log_size = log_size or _M.LOG_SIZE
    if from <= 0 or to < from or to - from > log_size then
        return nil
    end
    local changed = {}
    local prefix = self.log_prefix
    for v = from + 1, to do
        local entry = dict:get(prefix .. v)
        if entry == nil or entry == FULL then
            return nil
        end
        local names = decode(entry)
        if type(names) ~= "table" then
            return nil
        end
        for _, name in ipairs(names) do
            changed[name] = true
        end
    end
    return changed
end

_M.READ_ROUNDS = 4 -- repairs tried within one call of read() before leaving it for later

local function read_items(self, dict, items, names)
    local prefix = self.item_prefix
    for name in pairs(names) do
        items[name] = dict:get(prefix .. name) or false
    end
end

-- Read what changed since `state.version`, consistently (see the top of this file).
-- state: the reader's {version = V, pending = (kept here between calls), lazy = true when the
-- reader reads items on first use: a full load then reads no text}.
-- Returns version, items, full: items = {name -> text, or false when removed}; full = true when
-- items is the whole collection (a full load: names absent from it are gone; empty when lazy:
-- anything may have changed). Returns nil when
-- there is nothing to apply now: up to date, or a write under way (the caller keeps its view
-- and asks again on a later request).
function Collection:read(dict, state)
    local seq_key = self.seq_key
    local pending = state.pending
    for _ = 1, _M.READ_ROUNDS do
        local seq = dict:get(seq_key) or 0
        if seq % 2 == 1 then
            break
        end
        local version = dict:get(self.version_key) or 0
        if pending == nil then
            if version == state.version then
                return nil
            end
            pending = { seq = seq, version = version, items = {}, full = false }
            local changed = self:changes(dict, state.version, version)
            if changed == nil then
                pending.full = true
                local all = {}
                if not state.lazy then
                    for _, name in ipairs(self:all_names(dict)) do
                        all[name] = true
                    end
                end
                changed = all
            end
            read_items(self, dict, pending.items, changed)
        elseif seq ~= pending.seq then
            -- writes ran while the texts were read: re-read what they changed
            local changed = self:changes(dict, pending.version, version)
            if changed == nil then
                pending = nil -- too far behind or a replace: start over with a full load
            else
                pending.seq = seq
                pending.version = version
                read_items(self, dict, pending.items, changed)
            end
        end
        if pending ~= nil and (dict:get(seq_key) or 0) == pending.seq then
            state.pending = nil
            return pending.version, pending.items, pending.full
        end
    end
    state.pending = pending
    return nil
end

-- ----------------------------------------------------------------------------- writer

local function full_error(err, what)
    if err == "no memory" then
        return format("shared dict is full (lua_shared_dict ingressd_configuration too small) "
                      .. "while storing %s; nothing was changed", what)
    end
    return format("shared dict error while storing %s: %s; nothing was changed",
                  what, tostring(err))
end

-- Undo the writes recorded in `undo` ({key, old value} pairs) in reverse order, then publish the
-- touched names as a new version so that any worker that read a half-written value re-reads it.
local function rollback(coll, dict, version, undo, names, log_size)
    local ok = true
    for i = #undo, 1, -1 do
        local key, old = undo[i][1], undo[i][2]
        if old == nil then
            dict:delete(key)
        elseif not dict:safe_set(key, old) then
            ok = false
        end
    end
    if #names > 0 then
        local v = version + 1
        if dict:safe_set(coll.log_prefix .. v, encode_names(names)) then
            dict:delete(coll.log_prefix .. (v - log_size))
            dict:safe_set(coll.version_key, v)
        else
            dict:safe_set(coll.version_key, v) -- no log entry: readers fall back to a full reload
        end
    end
    return ok
end

local function do_write(coll, dict, mode, items, deletes, log_size)
    local version = dict:get(coll.version_key) or 0
    local prefix = coll.item_prefix
    local undo, nundo = {}, 0
    local changed, nchanged = {}, 0
    local present = {}
    -- names added to / removed from the index, by bucket key: {added = {...}, removed = {}}
    local buckets = {}

    local function fail(err, what)
        local restored = rollback(coll, dict, version, undo, changed, log_size)
        local msg = full_error(err, what)
        if not restored then
            msg = msg .. " (WARNING: rollback failed, the stored set may be partial)"
        end
        return nil, msg, 500
    end

    local function touch(name)
        local key = bucket_key(coll, name)
        local b = buckets[key]
        if b == nil then
            b = { added = {}, removed = {} }
            buckets[key] = b
        end
        return b
    end

    for _, item in ipairs(items) do
        local name = item.name
        local key = prefix .. name
        present[name] = true
        local old = dict:get(key)
        if old ~= item.raw then
            nundo = nundo + 1
            undo[nundo] = { key, old }
            nchanged = nchanged + 1
            changed[nchanged] = name
            local ok, err = dict:safe_set(key, item.raw)
            if not ok then
                return fail(err, format('%s "%s"', coll.what, name))
            end
            if old == nil then
                touch(name).added[name] = true
            end
        end
    end

    -- removals: every other name on a replace, the names asked for on an upsert
    local removed = {}
    local function remove(name)
        if not present[name] and not removed[name] then
            local key = prefix .. name
            local old = dict:get(key)
            if old ~= nil then
                removed[name] = true
                nundo = nundo + 1
                undo[nundo] = { key, old }
                nchanged = nchanged + 1
                changed[nchanged] = name
                dict:delete(key)
                touch(name).removed[name] = true
            end
        end
    end
    if mode == "replace" then
        for _, name in ipairs(coll:all_names(dict)) do
            remove(name)
        end
    end
    for _, name in ipairs(deletes or {}) do
        remove(name)
    end

    if nchanged == 0 then
        return version, 0
    end

    for key, b in pairs(buckets) do
        local old = dict:get(key)
        local names, n = {}, 0
        for _, name in ipairs(decode_bucket(coll, old)) do
            if not b.removed[name] and not b.added[name] then
                n = n + 1
                names[n] = name
            end
        end
        for name in pairs(b.added) do
            n = n + 1
            names[n] = name
        end
        nundo = nundo + 1
        undo[nundo] = { key, old }
        local ok, err
        if n == 0 then
            dict:delete(key)
            ok = true
        else
            ok, err = dict:safe_set(key, encode_names(names))
        end
        if not ok then
            return fail(err, "the " .. coll.what .. " index")
        end
    end

    local v = version + 1
    local entry = FULL
    if (mode ~= "replace" or coll.log_replace_by_name) and nchanged <= _M.LOG_MAX_NAMES then
        entry = encode_names(changed)
    end
    nundo = nundo + 1
    undo[nundo] = { coll.log_prefix .. v, nil }
    local ok, err = dict:safe_set(coll.log_prefix .. v, entry)
    if not ok then
        return fail(err, "the change log")
    end
    dict:delete(coll.log_prefix .. (v - log_size))

    ok, err = dict:safe_set(coll.version_key, v)
    if not ok then
        return fail(err, "the version")
    end
    return v, nchanged
end

local function acquire(dict, timeout)
    local waited = 0
    local step = 0.001
    local pid = ngx.worker.pid()
    while true do
        local ok, err = dict:safe_add(LOCK_KEY, pid, _M.LOCK_TTL)
        if ok then
            return true
        end
        if err ~= "exists" then
            return nil, "cannot take the configuration lock: " .. tostring(err), 500
        end
        if waited >= timeout then
            return nil, "another configuration update is still running; retry later", 503
        end
        ngx.sleep(step)
        waited = waited + step
        if step < 0.05 then
            step = step * 2
        end
    end
end

-- Store `items` ({name, raw}) under the writer lock.
-- mode: "upsert" (POST: add or change the given items) or "replace" (PUT: the whole set).
-- opts: delete = names to remove (upsert); prepare = function(dict) called under the lock,
-- returning items, delete (replacing the arguments) or nil, message, status (nothing is
-- written); log_size, lock_timeout (tests).
-- Returns version, number of changed items; or nil, message, HTTP status (4xx, 500 or 503).
function Collection:write(dict, mode, items, opts)
    opts = opts or {}
    local log_size = opts.log_size or _M.LOG_SIZE
    local ok, err, status = acquire(dict, opts.lock_timeout or _M.LOCK_TIMEOUT)
    if not ok then
        return nil, err, status
    end
    local deletes = opts.delete
    local pok, v, werr, wstatus = true, nil, nil, nil
    if opts.prepare ~= nil then
        pok, v, werr, wstatus = pcall(opts.prepare, dict)
        if pok and v ~= nil then
            items, deletes = v, werr
        elseif pok then
            dict:delete(LOCK_KEY)
            return nil, werr, wstatus or 400
        end
    end
    if pok then
        -- seq odd while writing; a writer that died left it odd: the next odd number then
        local seq = dict:get(self.seq_key) or 0
        seq = seq + ((seq % 2 == 0) and 1 or 2)
        pok, err = dict:safe_set(self.seq_key, seq)
        if not pok then
            dict:delete(LOCK_KEY)
            return nil, full_error(err, "the write sequence"), 500
        end
        pok, v, werr, wstatus = pcall(do_write, self, dict, mode, items, deletes, log_size)
        -- the key exists: replacing a number with a number needs no new memory
        dict:set(self.seq_key, seq + 1)
    end
    dict:delete(LOCK_KEY)
    if not pok then
        return nil, "internal error while storing " .. self.name .. ": " .. tostring(v), 500
    end
    return v, werr, wstatus
end

-- ----------------------------------------------------------------------------- collections

_M.backends = _M.collection({
    name = "backends", what = "backend", item_prefix = _M.BACKEND_PREFIX,
    index_key = _M.INDEX_KEY, log_prefix = _M.LOG_PREFIX, version_key = _M.VERSION_KEY,
    seq_key = "seq",
})

_M.routes = _M.collection({
    name = "routes", what = "route", item_prefix = "route:",
    index_key = "routes:index", log_prefix = "routes:log:", version_key = "routes:version",
    seq_key = "routes:seq", log_replace_by_name = true,
})

_M.certificates = _M.collection({
    name = "certificates", what = "certificate", item_prefix = "certificate:",
    index_key = "certificates:index", log_prefix = "certificates:log:",
    version_key = "certificates:version", seq_key = "certificates:seq",
    log_replace_by_name = true,
})

-- The backends collection's functions under their old names.
local backends = _M.backends

function _M.version(dict)
    return backends:version(dict)
end

function _M.names(dict)
    return backends:names(dict)
end

function _M.get(dict, name)
    return backends:get(dict, name)
end

function _M.list(dict)
    return backends:list(dict)
end

function _M.changes(dict, from, to, log_size)
    return backends:changes(dict, from, to, log_size)
end

function _M.write(dict, mode, items, opts)
    return backends:write(dict, mode, items, opts)
end

return _M
