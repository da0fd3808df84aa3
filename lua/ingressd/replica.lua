-- ingressd.replica: a worker's copy of one store collection (backends, routes, certificates),
-- brought up to date on the request or handshake that reads it.
--
-- Data flow:
--   refresh()  (every request of the owner: balancer, router, certificates)
--     -> one shm get of the collection's version; equal to the replica's -> nothing (hot path)
--     -> else sync(): store Collection:read() hands over whole writes only: the texts changed
--        since the replica's version ({name -> text, or false when removed}, from the change
--        log), or every text (first load, a replace, too far behind: `full`), or nothing yet
--        (a write under way: the next call tries again)
--     -> owner's apply(replica, items, full): decode what changed; then the version moves
--   An error in apply is logged and the version stays: the next call reads the changes again.
--
-- A replica is its owner's view table: `dict`, `version`, `pending` (Collection:read()'s
-- state), `stats` {full_loads, incremental, and the owner's counters}, and the owner's fields.
-- The master loads the replicas in init_by_lua, each worker what changed since in
-- init_worker_by_lua: a worker's first request finds them up to date.

local ngx = ngx
local ngx_log, ERR = ngx.log, ngx.ERR
local pcall, tostring, setmetatable = pcall, tostring, setmetatable

local _M = {}

_M.DICT_NAME = "ingressd_configuration"

local Replica = {}
Replica.__index = Replica

-- The shared dict the controller fills; raises when nginx.conf lacks it.
function _M.shared_dict()
    local dict = ngx.shared[_M.DICT_NAME]
    if dict == nil then
        error("lua_shared_dict " .. _M.DICT_NAME .. " is not defined in nginx.conf")
    end
    return dict
end

-- A replica of `collection` (a store collection) in `dict`: `fields` (a table, becomes the
-- replica) with the replica's own fields added. apply(replica, items, full) applies a read.
function _M.new(collection, dict, apply, fields)
    local r = fields or {}
    r.collection = collection
    r.version_key = collection.version_key
    r.dict = dict
    r.version = 0
    r.pending = nil
    r.apply = apply
    local stats = r.stats or {}
    stats.full_loads = 0
    stats.incremental = 0
    r.stats = stats
    return setmetatable(r, Replica)
end

-- Bring the replica to the shared dict's version. Returns true when it applied a write, false
-- when there was nothing to apply now. Raises what apply raises.
function Replica:sync()
    local version, items, full = self.collection:read(self.dict, self)
    if version == nil then
        return false
    end
    self.apply(self, items, full)
    local stats = self.stats
    if full then
        stats.full_loads = stats.full_loads + 1
    else
        stats.incremental = stats.incremental + 1
    end
    self.version = version
    return true
end

local sync = Replica.sync

local function sync_logged(self, what)
    local ok, err = pcall(sync, self)
    if not ok then
        ngx_log(ERR, "ingressd: ", what, " ", self.collection.name, " failed: ", tostring(err))
    end
end

-- Hot path: one shm get when nothing changed.
function Replica:refresh()
    if (self.dict:get(self.version_key) or 0) ~= self.version then
        sync_logged(self, "refresh of")
    end
end

-- init_by_lua (the master: its workers fork with what it read, and the shared dict outlives a
-- reload) and init_worker_by_lua (what changed since): load before the first request.
function Replica:load()
    sync_logged(self, "load of")
end

return _M
