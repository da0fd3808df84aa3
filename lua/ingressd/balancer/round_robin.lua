-- ingressd.balancer.round_robin: plain round robin over a backend's endpoints, per worker.
--
-- The interface every balancing algorithm implements (see ingressd.balancer):
--   new(entry[, start]) -> instance      entry = {name, backend (decoded JSON), endpoints, n}
--   instance:sync(entry)                 the backend changed: take the new endpoints, keep state
--   instance:balance(tried) -> endpoint  tried = nil on a first try, else a set
--                                        {["addr:port"]=true} of the peers this request
--                                        already failed on
--                                        (first tries rotate; retries do not move the rotation)
-- Endpoints are {address = string, port = number, key = "addr:port" as nginx names the peer}.
-- balance() allocates nothing.

local setmetatable, random = setmetatable, math.random

local _M = {}
local mt = { __index = _M }

-- `start` (1-based) fixes the first endpoint; by default a random one, so that workers and
-- freshly started backends do not all begin on the first endpoint.
function _M.new(entry, start)
    local n = entry.n
    local self = setmetatable({ endpoints = entry.endpoints, n = n, next = 1 }, mt)
    if start ~= nil then
        self.next = start
    elseif n > 1 then
        self.next = random(1, n)
    end
    return self
end

function _M.sync(self, entry)
    self.endpoints = entry.endpoints
    self.n = entry.n
    if self.next > self.n then
        self.next = 1
    end
end

function _M.balance(self, tried)
    local n = self.n
    if n == 0 then
        return nil
    end
    local i = self.next
    if i > n then
        i = 1
    end
    local endpoints = self.endpoints
    if tried == nil then
        self.next = i % n + 1
        return endpoints[i]
    end
    -- a retry: the first endpoint from the next in turn on that this request has not failed on
    -- yet (any one when all failed). Retries do not move the rotation, so first tries stay
    -- evenly spread even when some endpoints are down.
    for _ = 1, n do
        if not tried[endpoints[i].key] then
            return endpoints[i]
        end
        i = i % n + 1
    end
    return endpoints[i]
end

return _M
