-- Route table bodies (ingressd.routes): what is accepted, and every refusal names the entry and
-- the field.

local T = require("tests.assert")
local routes = require("ingressd.routes")
local cjson = require("cjson.safe")

local function body(entries)
    local parts = {}
    for i, e in ipairs(entries) do
        parts[i] = type(e) == "string" and e or cjson.encode(e)
    end
    return "[" .. table.concat(parts, ",") .. "]"
end

local function loc(fields)
    local l = { type = "prefix", path = "/", class = "c0", backend = "default-svc-80" }
    for k, v in pairs(fields or {}) do
        l[k] = v
    end
    return l
end

local function refused(entries, part)
    local items, err = routes.parse(type(entries) == "string" and entries or body(entries))
    T.is_nil(items, "expected a refusal containing " .. part)
    T.contains(err, part)
end

local cases = {}

cases["a full entry is accepted and kept verbatim"] = function()
    local text = '{"host": "www.zkj.com", "aliases": ["zkj.com", "*.zkj.org"], '
        .. '"hsts": "max-age=31536000; includeSubDomains", "appRoot": "/app", '
        .. '"locations": [{"path": "/backend", "type": "prefix", "class": "c3f9a01b2c4d", '
        .. '"backend": "default-nginx-svc-80", "status": 503, "namespace": "default", '
        .. '"ingress": "demo", "defaultBackend": null, "maxBody": 0}, '
        .. '{"path": "/api/v[0-9]+", "type": "regex", "class": "c1", "backend": null}]}'
    local items, err = routes.parse("[" .. text .. ', {"host": "_"}]')
    T.is_nil(err)
    T.eq(#items, 2)
    T.eq(items[1], { name = "www.zkj.com", raw = text })
    T.eq(items[2].name, "_")
end

cases["an empty array and minimal entries are accepted"] = function()
    T.eq(routes.parse("[]"), {})
    local items = routes.parse(body({ { host = "a.com" }, { host = "*.b.com", locations = {} } }))
    T.eq(#items, 2)
end

cases["host grammar: lower-case DNS names, one-label wildcards, _"] = function()
    for _, good in ipairs({ "a.com", "a-b.c0.com", "x", "*.foo.com", "_", "1.2.3.4" }) do
        T.truthy(routes.parse(body({ { host = good } })), good)
    end
    for _, bad in ipairs({ "A.com", "a..com", ".a.com", "a.com.", "-a.com", "a-.com",
                           "*.*.com", "a.*.com", "*", "*.", "a com", "a_b.com", "",
                           string.rep("a", 64) .. ".com" }) do
        refused({ { host = bad } }, 'route #1: "host"')
    end
    refused({ { host = 7 } }, 'route #1: "host" 7 must be')
    refused({ { nohost = true } }, 'route #1: "host" null must be')
end

cases["refusals name the entry and the field"] = function()
    local ok = { host = "ok.com", locations = { loc() } }
    local function second(e)
        return { ok, e }
    end
    refused(second({ host = "a.com", aliases = "b.com" }), 'route #2 "a.com": "aliases" must')
    refused(second({ host = "a.com", aliases = { "b.com", "_" } }),
            'route #2 "a.com": aliases[2] "_"')
    refused(second({ host = "a.com", hsts = true }), 'route #2 "a.com": "hsts" true must be')
    refused(second({ host = "a.com", appRoot = "app" }), '"appRoot" "app" must be a path')
    refused(second({ host = "a.com", appRoot = "/a b" }), '"appRoot"')
    refused(second({ host = "a.com", locations = { x = 1 } }), '"locations" must be an array')
    refused(second({ host = "a.com", locations = { loc(), 7 } }),
            'route #2 "a.com": locations[2] must be a JSON object')
    refused(second({ host = "a.com", locations = { loc({ type = "Prefix" }) } }),
            'locations[1].type "Prefix" must be "exact", "prefix" or "regex"')
    refused(second({ host = "a.com", locations = { loc({ path = "foo" }) } }),
            'locations[1].path "foo" must start with "/"')
    refused(second({ host = "a.com", locations = { loc({ path = "/a b" }) } }),
            'locations[1].path "/a b" must start with "/"')
    refused(second({ host = "a.com", locations = { loc({ path = "" }) } }),
            "locations[1].path \"\" must be a non-empty string")
    refused(second({ host = "a.com", locations = { loc({ class = "C1" }) } }),
            'locations[1].class "C1" must match ^c[0-9a-f]+$')
    refused(second({ host = "a.com", locations = { loc({ class = "c1; x" }) } }),
            "locations[1].class")
    refused(second({ host = "a.com", locations = { loc({ backend = 3 }) } }),
            "locations[1].backend 3 must be a backend name or null")
    refused(second({ host = "a.com", locations = { loc({ status = 200 }) } }),
            "locations[1].status 200 must be an integer from 400 to 599")
    refused(second({ host = "a.com", locations = { loc({ maxBody = -1 }) } }),
            "locations[1].maxBody -1 must be a number of bytes")
    refused(second({ host = "a.com", locations = { loc({ maxBody = 1.5 }) } }),
            "locations[1].maxBody 1.5")
    refused(second({ host = "a.com", locations = { loc({ namespace = 1 }) } }),
            'locations[1]: "namespace" must be a string')
    refused(second({ host = "a.com", locations = { loc({ defaultBackend = {} }) } }),
            '"defaultBackend" must be a string')
    refused(second({ host = "a.com", locations = { loc({ servicePort = 80 }) } }),
            '"servicePort" must be a string')
end

cases["a regex that does not compile is refused with PCRE's message"] = function()
    refused({ { host = "a.com", locations = { loc({ type = "regex", path = "/a(b" }) } } },
            'route #1 "a.com": locations[1].path "/a(b" is not a valid regex')
    T.truthy(routes.parse(body({ { host = "a.com", locations = {
        loc({ type = "regex", path = "/a/(.*)$" }) } } })))
end

cases["duplicate locations and duplicate hosts are refused"] = function()
    refused({ { host = "a.com", locations = { loc({ path = "/x" }), loc({ path = "/x/" }) } } },
            'locations[2]: the prefix path "/x" is already at locations[1]')
    refused({ { host = "a.com", locations = {
        loc({ type = "exact", path = "/x" }), loc({ type = "exact", path = "/x" }) } } },
            'locations[2]: the exact path "/x" is already at locations[1]')
    T.truthy(routes.parse(body({ { host = "a.com", locations = {
        loc({ type = "exact", path = "/x" }), loc({ path = "/x" }) } } })),
        "exact and prefix on the same path are two locations")
    refused({ { host = "a.com" }, { host = "b.com" }, { host = "a.com" } },
            'route #3: duplicate host "a.com" (first at #1)')
end

cases["bodies that are not arrays of objects"] = function()
    refused("", "empty body: expected a JSON array of routes")
    refused('{"host": "a.com"}', "body must be a JSON array of routes")
    refused('[{"host": "a.com"}, {"host": }]', "route #2: invalid JSON")
    refused("[[1]]", "route #1: must be a JSON object")
end

cases["element texts are split right around strings with backslashes and brackets"] =
function()
    local a = [[{"host":"a.com","note":"x\\"}]]
    local b = [[{"host":"b.com","note":"q\"],\\\"}{","locations":[]}]]
    T.eq(cjson.decode(b).note, 'q"],\\"}{')
    local items, err = routes.parse("[" .. a .. ", " .. b .. "]")
    T.is_nil(err)
    T.eq({ items[1].raw, items[2].raw }, { a, b })
end

cases["DELETE bodies: an array of hosts"] = function()
    T.eq(routes.parse_hosts('["a.com", "*.b.com", "_"]'), { "a.com", "*.b.com", "_" })
    local hosts, err = routes.parse_hosts('["a.com", "A.com"]')
    T.is_nil(hosts)
    T.contains(err, 'hosts[2] "A.com" must be')
    hosts, err = routes.parse_hosts('{"a": 1}')
    T.is_nil(hosts)
    T.contains(err, "body must be a JSON array of hosts")
end

return cases
