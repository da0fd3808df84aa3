-- ingressd.backends: parse and validate a request body holding a JSON array of backends.
--
-- Data flow: request body (string) -> split_array() -> one verbatim JSON text per element
--            -> cjson decode of each element -> validate() -> {name = ..., raw = ...} items.
--
-- Each backend's original JSON text is kept verbatim (never re-encoded): lua-cjson 2.1.0
-- (Debian) cannot tell [] from {} after decoding, so re-encoding would turn
-- "alternativeBackends": [] into {}. Keeping the text means GET returns exactly what was sent,
-- extra keys included.
--
-- Pure module but for pausing (ingressd.pausing) while splitting a large body in the content
-- phase; usable from any phase and from the Lua unit tests.

local cjson = require("cjson.safe")
local pausing = require("ingressd.pausing")

local byte, find, sub, format = string.byte, string.find, string.sub, string.format
local type, pairs, ipairs, tonumber, floor = type, pairs, ipairs, tonumber, math.floor
local decode = cjson.decode
local null = cjson.null

local _M = {}

_M.MAX_NAME_LENGTH = 4096

local NON_WS = "[^ \t\r\n]"

-- Last non-whitespace position in s[from, to], or nil.
local function rtrim(s, from, to)
    while to >= from do
        local c = byte(s, to)
        if c ~= 32 and c ~= 9 and c ~= 10 and c ~= 13 then
            return to
        end
        to = to - 1
    end
    return nil
end

-- Split the text of a top-level JSON array into the verbatim texts of its elements.
-- Only the structure between elements is checked here; each element is validated later by
-- decoding it on its own. `what` names the elements in messages ("backends" by default).
-- Returns an array of strings, or nil and an error message.
function _M.split_array(s, what)
    what = what or "backends"
    if type(s) ~= "string" then
        return nil, "body must be a JSON array"
    end
    local first = find(s, NON_WS)
    if first == nil then
        return nil, "empty body: expected a JSON array of " .. what
    end
    if byte(s, first) ~= 91 then -- [
        return nil, "body must be a JSON array of " .. what
    end
    local items = {}
    local n = 0
    local pos = first + 1
    local p = find(s, NON_WS, pos)
    if p ~= nil and byte(s, p) == 93 then -- ]
        if find(s, NON_WS, p + 1) then
            return nil, "invalid JSON: trailing data after the array"
        end
        return items
    end
    local start = pos
    local depth = 0
    local pause = pausing.pauser() -- a large body: let this worker's other requests run
    while true do
        -- inside an element only brackets and strings matter (not its commas)
        local q = find(s, depth > 0 and '[%[%]{}"]' or '[%[%]{}",]', pos)
        if q == nil then
            return nil, "invalid JSON: unterminated array"
        end
        local c = byte(s, q)
        if c == 34 then -- " : skip the string: up to the next quote after an even run of \
            local j = q + 1
            while true do
                local r = find(s, '"', j, true)
                if r == nil then
                    return nil, "invalid JSON: unterminated string"
                end
                local k = r - 1
                while byte(s, k) == 92 do -- stops at the opening quote at the latest
                    k = k - 1
                end
                j = r + 1
                if (r - 1 - k) % 2 == 0 then
                    break
                end
            end
            pos = j
        elseif c == 91 or c == 123 then -- [ {
            depth = depth + 1
            pos = q + 1
        elseif depth > 0 then -- ] } , inside an element
            if c ~= 44 then
                depth = depth - 1
            end
            pos = q + 1
        elseif c == 125 then -- } at top level
            return nil, "invalid JSON: unbalanced '}'"
        else -- , or ] at top level: end of an element
            local a = find(s, NON_WS, start)
            local b = a and a < q and rtrim(s, a, q - 1)
            if not b then
                return nil, format("invalid JSON: empty element at position %d", n + 1)
            end
            n = n + 1
            items[n] = sub(s, a, b)
            pause()
            if c == 93 then
                if find(s, NON_WS, q + 1) then
                    return nil, "invalid JSON: trailing data after the array"
                end
                return items
            end
            start = q + 1
            pos = q + 1
        end
    end
end

function _M.is_array(t)
    local count = 0
    for k in pairs(t) do
        if type(k) ~= "number" then
            return false
        end
        count = count + 1
    end
    return count == #t
end

-- Port as a number 1..65535 from a string of digits or an integer number, else nil.
local function port_number(port)
    local t = type(port)
    if t == "string" then
        if not find(port, "^%d+$") then
            return nil
        end
        port = tonumber(port)
    elseif t ~= "number" then
        return nil
    end
    if port < 1 or port > 65535 or floor(port) ~= port then
        return nil
    end
    return port
end

_M.port_number = port_number

-- Check one decoded backend. `index` is its 1-based position in the array.
-- Returns nil when valid, else an error message naming the backend and the field.
function _M.validate(index, b)
    if type(b) ~= "table" then
        return format("backend #%d: must be a JSON object", index)
    end
    local name = b.name
    if type(name) ~= "string" or name == "" then
        return format('backend #%d: "name" must be a non-empty string', index)
    end
    if #name > _M.MAX_NAME_LENGTH then
        return format('backend #%d: "name" is longer than %d bytes', index, _M.MAX_NAME_LENGTH)
    end
    local where = format('backend #%d "%s"', index, name)
    local eps = b.endpoints
    if eps == nil or eps == null then
        return nil
    end
    if type(eps) ~= "table" or not _M.is_array(eps) then
        return where .. ': "endpoints" must be an array of {address, port}'
    end
    for j, ep in ipairs(eps) do
        if type(ep) ~= "table" then
            return format("%s: endpoints[%d] must be an object {address, port}", where, j)
        end
        local address = ep.address
        if type(address) ~= "string" or address == "" then
            return format('%s: endpoints[%d].address must be a non-empty string', where, j)
        end
        if port_number(ep.port) == nil then
            return format('%s: endpoints[%d].port %s is not a port number (1-65535)',
                          where, j, (cjson.encode(ep.port)) or "?")
        end
    end
    return nil
end

-- Parse the body of a DELETE: a JSON array of backend names, each as `validate` takes them.
-- Returns the names, or nil and an error message.
function _M.parse_names(body)
    local names = decode(body or "")
    if type(names) ~= "table" or not _M.is_array(names) then
        return nil, "body must be a JSON array of backend names"
    end
    for i, name in ipairs(names) do
        if type(name) ~= "string" or name == "" or #name > _M.MAX_NAME_LENGTH then
            return nil, format("names[%d] must be a string of 1 to %d bytes", i,
                               _M.MAX_NAME_LENGTH)
        end
    end
    return names
end

-- Parse a request body into an array of {name = string, raw = string (verbatim JSON)}.
-- Returns items, or nil and an error message (nothing partial is ever returned).
function _M.parse(body)
    local texts, err = _M.split_array(body)
    if texts == nil then
        return nil, err
    end
    local items = {}
    local seen = {}
    for i, raw in ipairs(texts) do
        local b, derr = decode(raw)
        if b == nil then
            return nil, format("backend #%d: invalid JSON: %s", i, derr or "?")
        end
        local verr = _M.validate(i, b)
        if verr ~= nil then
            return nil, verr
        end
        if seen[b.name] then
            return nil, format('backend #%d: duplicate name "%s" (first at #%d)',
                               i, b.name, seen[b.name])
        end
        seen[b.name] = i
        items[i] = { name = b.name, raw = raw }
    end
    return items
end

return _M
