-- Validation of request bodies (ingressd.backends): what is accepted, what is rejected and
-- that the error names the backend and the field.

local T = require("tests.assert")
local backends = require("ingressd.backends")

local function ok(body)
    local items, err = backends.parse(body)
    if items == nil then
        error("parse failed: " .. tostring(err), 2)
    end
    return items
end

local function bad(body, part)
    local items, err = backends.parse(body)
    if items ~= nil then
        error("expected a parse error for " .. T.show(body), 2)
    end
    if not err:find(part, 1, true) then
        error(string.format("error %s does not mention %s", T.show(err), T.show(part)), 2)
    end
end

local cases = {}

cases["empty array is an empty set"] = function()
    T.eq(#ok("[]"), 0)
    T.eq(#ok("  [ \n ]  \n"), 0)
end

cases["keeps each backend's JSON text verbatim, extra keys and empty arrays included"] =
function()
    local a = '{"name":"a","port":"80","endpoints":[],"alternativeBackends":[],'
        .. '"sessionAffinityConfig":{"name":"","cookieSessionAffinity":{"name":""}},'
        .. '"load-balance":"round_robin","trafficShapingPolicy":{"weight":0,"header":"x,]}\\""}}'
    local b = '{"name":"b","endpoints":[{"address":"127.0.1.1","port":"8000"},'
        .. '{"address":"127.0.1.2","port":8001}]}'
    local items = ok(" [ " .. a .. " ,\n\t" .. b .. " ] ")
    T.eq(#items, 2)
    T.eq(items[1].name, "a")
    T.eq(items[1].raw, a)
    T.eq(items[2].name, "b")
    T.eq(items[2].raw, b)
end

cases["endpoints may be missing or null"] = function()
    T.eq(#ok('[{"name":"a"},{"name":"b","endpoints":null}]'), 2)
end

cases["ports: strings of digits and integers 1-65535"] = function()
    for _, p in ipairs({ '"1"', '"65535"', "80", "8000" }) do
        ok('[{"name":"a","endpoints":[{"address":"x","port":' .. p .. '}]}]')
    end
    for _, p in ipairs({ '"0"', '"65536"', '"80a"', '""', '"-1"', "0", "1.5", "70000", "null",
                         "true", "[]" }) do
        bad('[{"name":"a","endpoints":[{"address":"x","port":' .. p .. '}]}]',
            'backend #1 "a": endpoints[1].port')
    end
end

cases["rejects bodies that are not a JSON array"] = function()
    bad("", "empty body")
    bad("   ", "empty body")
    bad("{}", "must be a JSON array")
    bad('{"name":"a"}', "must be a JSON array")
    bad('"x"', "must be a JSON array")
    bad("null", "must be a JSON array")
    bad("[", "unterminated")
    bad('[{"name":"a"}', "unterminated")
    bad('[{"name":"a}]', "unterminated string")
    bad('[{"name":"a"}] x', "trailing data")
    bad("[] []", "trailing data")
    bad('[{"name":"a"},]', "empty element at position 2")
    bad("[,]", "empty element at position 1")
    bad('[{"name":"a"}}]', "unbalanced")
end

cases["rejects elements that are not valid JSON objects"] = function()
    bad('[{"name":"a",}]', "backend #1: invalid JSON")
    bad('[{"name":"a"},{"name" "b"}]', "backend #2: invalid JSON")
    bad('[{"name":"a"},{"name":"b"]]', "backend #2: invalid JSON")
    bad('[{"name":"a"},5]', "backend #2: must be a JSON object")
    bad('[{"name":"a"},"b"]', "backend #2: must be a JSON object")
end

cases["rejects a backend without a string name"] = function()
    bad('[{"port":"80"}]', 'backend #1: "name" must be a non-empty string')
    bad('[{"name":""}]', 'backend #1: "name" must be a non-empty string')
    bad('[{"name":"a"},{"name":5}]', 'backend #2: "name" must be a non-empty string')
    bad('[{"name":null}]', 'backend #1: "name"')
    bad('[[]]', 'backend #1: "name"')
end

cases["rejects duplicate names"] = function()
    bad('[{"name":"a"},{"name":"b"},{"name":"a"}]', 'backend #3: duplicate name "a" (first at #1)')
end

cases["rejects endpoints that are not an array of {address, port}"] = function()
    bad('[{"name":"a","endpoints":"x"}]', 'backend #1 "a": "endpoints" must be an array')
    bad('[{"name":"a","endpoints":{"address":"x","port":"1"}}]',
        'backend #1 "a": "endpoints" must be an array')
    bad('[{"name":"a","endpoints":[5]}]', 'backend #1 "a": endpoints[1] must be an object')
    bad('[{"name":"a","endpoints":[{"address":"x","port":"1"},{"port":"1"}]}]',
        'backend #1 "a": endpoints[2].address')
    bad('[{"name":"a","endpoints":[{"address":7,"port":"1"}]}]', "endpoints[1].address")
    bad('[{"name":"a","endpoints":[{"address":"x"}]}]', "endpoints[1].port null is not a port")
end

cases["rejects an over-long name"] = function()
    bad('[{"name":"' .. string.rep("n", backends.MAX_NAME_LENGTH + 1) .. '"}]', "longer than")
end

cases["splits large arrays quickly and exactly"] = function()
    local parts = {}
    for i = 1, 5000 do
        parts[i] = string.format('{"name":"ns-svc-%d","endpoints":[{"address":"10.0.%d.%d",'
            .. '"port":"8080"}],"note":"[{,\\"}]"}', i, i % 250, i % 200)
    end
    local t0 = ngx.now()
    ngx.update_time()
    local items = ok("[" .. table.concat(parts, ",") .. "]")
    ngx.update_time()
    T.eq(#items, 5000)
    T.eq(items[4321].raw, parts[4321])
    T.truthy(ngx.now() - t0 < 2, "5000 backends parsed in under 2 s")
end

return cases
