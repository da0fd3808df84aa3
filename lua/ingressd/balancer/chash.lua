-- ingressd.balancer.chash: consistent hashing (upstream-hash-by) over a backend's endpoints.
--
-- Data flow: sync(entry) builds a ring of POINTS virtual nodes per endpoint (crc32 of
-- "address:port#i", sorted; ties by endpoint key, so every worker builds the same ring) ->
-- balance(tried) evaluates the backend's upstream-hash-by (nginx variables and text, e.g.
-- "$request_uri" or "${http_x_user}-x", read with ngx.var) -> crc32 -> the first point at or
-- after it on the ring (wrapping) -> its endpoint. Adding or removing one endpoint moves only
-- the keys of the ring arcs it gains or loses (about 1/n of them).
--
-- Interface (see ingressd.balancer): new(entry), sync(entry), balance(tried); plus find(key,
-- tried) for a key given directly (sticky_balanced and the unit tests use it).

local crc32 = ngx.crc32_long
local setmetatable, type, sort, floor = setmetatable, type, table.sort, math.floor
local sub, find = string.sub, string.find
local concat = table.concat

local _M = {}
local mt = { __index = _M }

_M.POINTS = 160

-- "$a${b}-x" -> { {var="a"}, {var="b"}, {text="-x"} }; nil when there is no variable.
function _M.parse_key(spec)
    if type(spec) ~= "string" or spec == "" then
        return nil
    end
    local parts, n, pos, has_var = {}, 0, 1, false
    while pos <= #spec do
        local a, b, name = find(spec, "^%${([%w_]+)}", pos)
        if not a then
            a, b, name = find(spec, "^%$([%w_]+)", pos)
        end
        if a then
            n = n + 1
            parts[n] = { var = name }
            has_var = true
            pos = b + 1
        else
            local c = find(spec, "$", pos, true) or (#spec + 1)
            if c == pos then -- a lone "$": keep it as text
                c = pos + 1
            end
            n = n + 1
            parts[n] = { text = sub(spec, pos, c - 1) }
            pos = c
        end
    end
    if not has_var then
        return nil
    end
    return parts
end

local function build_ring(self, entry)
    local points = {}
    local n = 0
    for i, ep in ipairs(entry.endpoints) do
        for p = 1, _M.POINTS do
            n = n + 1
            points[n] = { crc32(ep.key .. "#" .. p), ep.key, i }
        end
    end
    sort(points, function(x, y)
        if x[1] ~= y[1] then
            return x[1] < y[1]
        end
        return x[2] < y[2]
    end)
    local hashes, owners = {}, {}
    for i = 1, n do
        hashes[i] = points[i][1]
        owners[i] = entry.endpoints[points[i][3]]
    end
    self.hashes, self.owners, self.size = hashes, owners, n
end

function _M.new(entry)
    local self = setmetatable({}, mt)
    self:sync(entry)
    return self
end

function _M.sync(self, entry)
    self.n = entry.n
    local config = entry.backend and entry.backend.upstreamHashByConfig
    local spec = type(config) == "table" and config["upstream-hash-by"] or nil
    self.spec = spec
    self.parts = _M.parse_key(spec)
    build_ring(self, entry)
end

-- The value of the hash key for the current request.
function _M.key(self)
    local parts = self.parts
    if parts == nil then
        return ""
    end
    local out = {}
    local var = ngx.var
    for i, part in ipairs(parts) do
        if part.var then
            out[i] = var[part.var] or ""
        else
            out[i] = part.text
        end
    end
    return concat(out)
end

-- First ring index whose hash is >= h (1 when h is past the last point).
local function search(hashes, size, h)
    local lo, hi = 1, size
    if h > hashes[size] then
        return 1
    end
    while lo < hi do
        local mid = floor((lo + hi) / 2)
        if hashes[mid] < h then
            lo = mid + 1
        else
            hi = mid
        end
    end
    return lo
end

function _M.find(self, key, tried)
    local size = self.size
    if size == 0 then
        return nil
    end
    local i = search(self.hashes, size, crc32(key))
    local owners = self.owners
    if tried == nil then
        return owners[i]
    end
    -- a retry: the next endpoint clockwise this request has not failed on
    for _ = 1, size do
        local ep = owners[i]
        if not tried[ep.key] then
            return ep
        end
        i = i % size + 1
    end
    return owners[i]
end

function _M.balance(self, tried)
    return self:find(self:key(), tried)
end

return _M
