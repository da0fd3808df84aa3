-- ingressd.store: the layout of the backend set in the shared dict, its writer and its readers.
--
-- Keys (one lua_shared_dict, shared by every worker, kept across `nginx -s reload`):
--   "backend:<name>"  verbatim JSON text of one backend
--   "index"           JSON array of every backend name, sorted
--   "log:<version>"   what changed at <version>: a JSON array of backend names, or "*" for a
--                     full replace (PUT) or more than LOG_MAX_NAMES changes (readers then
--                     reload everything, re-decoding only backends whose text changed);
--                     the last `log_size` entries are kept
--   "version"         integer, bumped once per write that changed something
--   "lock"            writer lock (safe_add with a TTL)
--
-- Writer (configuration endpoint): backends -> index -> log -> version, so a reader that sees
-- version V finds all data of V. Readers (balancer, per worker) compare "version" with their
-- own and read changes(from, to) or everything (names + get).
--
-- Only safe_set/safe_add are used: nothing of ours is ever evicted by the LRU; a full dict is
-- reported as an error and the write is rolled back.

local cjson = require("cjson.safe")

local ngx = ngx
local type, ipairs, pairs, tostring, format = type, ipairs, pairs, tostring, string.format
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

local BACKEND_PREFIX, LOG_PREFIX, INDEX_KEY, VERSION_KEY, LOCK_KEY, FULL =
    _M.BACKEND_PREFIX, _M.LOG_PREFIX, _M.INDEX_KEY, _M.VERSION_KEY, _M.LOCK_KEY, _M.FULL

local function encode_names(names)
    if #names == 0 then
        return "[]" -- cjson would say {}
    end
    return encode(names)
end

-- ----------------------------------------------------------------------------- readers

function _M.version(dict)
    return dict:get(VERSION_KEY) or 0
end

-- Sorted array of every backend name.
function _M.names(dict)
    local raw = dict:get(INDEX_KEY)
    if raw == nil then
        return {}
    end
    local names = decode(raw)
    if type(names) ~= "table" then
        ngx.log(ngx.ERR, "ingressd: corrupt backend index in the shared dict")
        return {}
    end
    return names
end

function _M.get(dict, name)
    return (dict:get(BACKEND_PREFIX .. name))
end

-- JSON array of every backend, sorted by name ("[]" when empty).
function _M.list(dict)
    local parts, n = {}, 0
    for _, name in ipairs(_M.names(dict)) do
        local raw = dict:get(BACKEND_PREFIX .. name)
        if raw ~= nil then
            n = n + 1
            parts[n] = raw
        end
    end
    return "[" .. concat(parts, ",") .. "]"
end

-- Set {name = true} of the backends changed in versions (from, to], or nil when the caller must
-- reload everything: a full replace in the range, or a log entry already dropped.
function _M.changes(dict, from, to, log_size)
    log_size = log_size or _M.LOG_SIZE
    if from <= 0 or to < from or to - from > log_size then
        return nil
    end
    local changed = {}
    for v = from + 1, to do
        local entry = dict:get(LOG_PREFIX .. v)
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
local function rollback(dict, version, undo, names, log_size)
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
        if dict:safe_set(LOG_PREFIX .. v, encode_names(names)) then
            dict:delete(LOG_PREFIX .. (v - log_size))
            dict:safe_set(VERSION_KEY, v)
        else
            dict:safe_set(VERSION_KEY, v) -- no log entry: readers fall back to a full reload
        end
    end
    return ok
end

local function do_write(dict, mode, items, log_size)
    local version = dict:get(VERSION_KEY) or 0
    local old_names = _M.names(dict)
    local undo, nundo = {}, 0
    local changed, nchanged = {}, 0
    local present = {}
    local added = false
    local existing = {}
    for _, name in ipairs(old_names) do
        existing[name] = true
    end

    local function fail(err, what)
        local restored = rollback(dict, version, undo, changed, log_size)
        local msg = full_error(err, what)
        if not restored then
            msg = msg .. " (WARNING: rollback failed, the stored set may be partial)"
        end
        return nil, msg, 500
    end

    for _, item in ipairs(items) do
        local name = item.name
        local key = BACKEND_PREFIX .. name
        present[name] = true
        local old = dict:get(key)
        if old ~= item.raw then
            nundo = nundo + 1
            undo[nundo] = { key, old }
            nchanged = nchanged + 1
            changed[nchanged] = name
            local ok, err = dict:safe_set(key, item.raw)
            if not ok then
                return fail(err, format('backend "%s"', name))
            end
        end
        if not existing[name] then
            added = true
        end
    end

    local new_names
    if mode == "replace" then
        for _, name in ipairs(old_names) do
            if not present[name] then
                local key = BACKEND_PREFIX .. name
                nundo = nundo + 1
                undo[nundo] = { key, dict:get(key) }
                nchanged = nchanged + 1
                changed[nchanged] = name
                dict:delete(key)
            end
        end
        if added or #old_names ~= #items then
            new_names = {}
            for i, item in ipairs(items) do
                new_names[i] = item.name
            end
        end
    elseif added then
        new_names = {}
        for i, name in ipairs(old_names) do
            new_names[i] = name
        end
        for name in pairs(present) do
            if not existing[name] then
                new_names[#new_names + 1] = name
            end
        end
    end

    if nchanged == 0 then
        return version, 0
    end

    if new_names ~= nil then
        sort(new_names)
        nundo = nundo + 1
        undo[nundo] = { INDEX_KEY, dict:get(INDEX_KEY) }
        local ok, err = dict:safe_set(INDEX_KEY, encode_names(new_names))
        if not ok then
            return fail(err, "the backend index")
        end
    end

    local v = version + 1
    local entry = FULL
    if mode ~= "replace" and nchanged <= _M.LOG_MAX_NAMES then
        entry = encode_names(changed)
    end
    nundo = nundo + 1
    undo[nundo] = { LOG_PREFIX .. v, nil }
    local ok, err = dict:safe_set(LOG_PREFIX .. v, entry)
    if not ok then
        return fail(err, "the change log")
    end
    dict:delete(LOG_PREFIX .. (v - log_size))

    ok, err = dict:safe_set(VERSION_KEY, v)
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

-- Store `items` ({name, raw} from backends.parse) under the writer lock.
-- mode: "upsert" (POST: add or change the given backends) or "replace" (PUT: the whole set).
-- opts (tests): log_size, lock_timeout.
-- Returns version, number of changed backends; or nil, message, HTTP status (500 or 503).
function _M.write(dict, mode, items, opts)
    opts = opts or {}
    local log_size = opts.log_size or _M.LOG_SIZE
    local ok, err, status = acquire(dict, opts.lock_timeout or _M.LOCK_TIMEOUT)
    if not ok then
        return nil, err, status
    end
    local pok, v, werr, wstatus = pcall(do_write, dict, mode, items, log_size)
    dict:delete(LOCK_KEY)
    if not pok then
        return nil, "internal error while storing backends: " .. tostring(v), 500
    end
    return v, werr, wstatus
end

return _M
