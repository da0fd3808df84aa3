-- ingressd.balancer.ewma: peak-latency EWMA with the power of two choices (load-balance: ewma).
--
-- Data flow: balance(tried) picks two distinct random endpoints this request has not failed on
-- and returns the one with the lower score -> nginx proxies -> log phase: after_balance(key,
-- rtt) folds the measured time (connect + header time) into that endpoint's EWMA.
-- Scores decay towards 0 with time (DECAY_TIME), so an endpoint that was slow once is tried
-- again later; an endpoint never measured scores 0 and is tried first.
--
-- State is per worker and per backend; sync() keeps the scores of endpoints that stay.
-- `now` and `random` are fields so that the unit tests can drive time and chance.

local setmetatable, exp, max = setmetatable, math.exp, math.max

local _M = {}
local mt = { __index = _M }

_M.DECAY_TIME = 10 -- seconds

function _M.new(entry)
    local self = setmetatable({ ewma = {}, stamp = {}, now = ngx.now, random = math.random }, mt)
    self:sync(entry)
    return self
end

function _M.sync(self, entry)
    self.endpoints, self.n = entry.endpoints, entry.n
    local keep = {}
    for _, ep in ipairs(entry.endpoints) do
        keep[ep.key] = true
    end
    for key in pairs(self.ewma) do
        if not keep[key] then
            self.ewma[key], self.stamp[key] = nil, nil
        end
    end
end

-- The endpoint's EWMA decayed to `now`, folding `rtt` in when given.
local function decayed(self, key, now, rtt)
    local value = self.ewma[key]
    if value == nil then
        if rtt ~= nil then
            self.ewma[key], self.stamp[key] = rtt, now
        end
        return rtt or 0
    end
    local weight = exp(-max(now - self.stamp[key], 0) / _M.DECAY_TIME)
    value = value * weight + (rtt or 0) * (1 - weight)
    if rtt ~= nil then
        self.ewma[key], self.stamp[key] = value, now
    end
    return value
end

function _M.score(self, key)
    return decayed(self, key, self.now())
end

function _M.after_balance(self, key, rtt)
    if self.ewma[key] == nil then
        -- first measurement: take it as is
        self.ewma[key], self.stamp[key] = rtt, self.now()
        return
    end
    decayed(self, key, self.now(), rtt)
end

function _M.balance(self, tried)
    local n, endpoints = self.n, self.endpoints
    if n == 0 then
        return nil
    end
    if n == 1 then
        return endpoints[1]
    end
    local candidates, count = endpoints, n
    if tried ~= nil then
        candidates, count = {}, 0
        for _, ep in ipairs(endpoints) do
            if not tried[ep.key] then
                count = count + 1
                candidates[count] = ep
            end
        end
        if count == 0 then
            return endpoints[self.random(1, n)]
        end
        if count == 1 then
            return candidates[1]
        end
    end
    local random = self.random
    local i = random(1, count)
    local j = random(1, count - 1)
    if j >= i then
        j = j + 1
    end
    local a, b = candidates[i], candidates[j]
    local now = self.now()
    if decayed(self, b.key, now) < decayed(self, a.key, now) then
        return b
    end
    return a
end

return _M
