-- tests.assert: small assertion helpers for the Lua unit tests. Each raises an error located at
-- the caller's line.

local cjson = require("cjson.safe")

local _M = {}

local function show(v)
    if type(v) == "string" then
        return string.format("%q", v)
    end
    if type(v) == "table" then
        return cjson.encode(v) or tostring(v)
    end
    return tostring(v)
end

_M.show = show

local function deep_equal(a, b)
    if type(a) ~= type(b) then
        return false
    end
    if type(a) ~= "table" then
        return a == b
    end
    for k, v in pairs(a) do
        if not deep_equal(v, b[k]) then
            return false
        end
    end
    for k in pairs(b) do
        if a[k] == nil then
            return false
        end
    end
    return true
end

_M.deep_equal = deep_equal

function _M.eq(actual, expected, what)
    if not deep_equal(actual, expected) then
        error(string.format("%sexpected %s, got %s", what and (what .. ": ") or "",
                            show(expected), show(actual)), 2)
    end
end

function _M.truthy(v, what)
    if not v then
        error((what or "expected a true value") .. ", got " .. show(v), 2)
    end
end

function _M.is_nil(v, what)
    if v ~= nil then
        error((what or "expected nil") .. ", got " .. show(v), 2)
    end
end

function _M.contains(s, part, what)
    if type(s) ~= "string" or not s:find(part, 1, true) then
        error(string.format("%sexpected %s to contain %s", what and (what .. ": ") or "",
                            show(s), show(part)), 2)
    end
end

-- An empty test dict for each case.
function _M.fresh_dict(name)
    local dict = ngx.shared[name or "ingressd_test"]
    assert(dict, "lua_shared_dict " .. (name or "ingressd_test") .. " missing in the harness")
    dict:flush_all()
    dict:flush_expired()
    return dict
end

return _M
