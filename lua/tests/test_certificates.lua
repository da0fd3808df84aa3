-- Certificates (ingressd.certificates): body checks (every PEM parsed), storage of both maps in
-- one version with pruning, the worker view (exact host, one-label wildcard, nothing) and the
-- per-worker cache of parsed pairs. The handshake itself is tested through nginx
-- (tests/test_lua.py). PEM fixtures are written by the harness into tests/fixtures/.

local T = require("tests.assert")
local store = require("ingressd.store")
local certificates = require("ingressd.certificates")
local cjson = require("cjson.safe")

local FIXTURES = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") .. "/fixtures/"

local function fixture(name)
    local f = assert(io.open(FIXTURES .. name, "rb"), "fixture " .. name
                     .. " missing: tests/test_lua.py writes it when it starts nginx")
    local text = f:read("*a")
    f:close()
    return text
end

local function parse(tbl, replace)
    return certificates.parse(cjson.encode(tbl), replace)
end

local function write(dict, mode, tbl)
    local parsed, err = parse(tbl, mode == "replace")
    T.truthy(parsed, err)
    return certificates.write(dict, mode, parsed)
end

local function stored(dict)
    return cjson.decode(certificates.list(dict))
end

local cases = {}

cases["a PEM with the chain and the key parses (EC and RSA)"] = function()
    for _, name in ipairs({ "ec.pem", "rsa.pem" }) do
        local pair, err = certificates.parse_pem(fixture(name))
        T.truthy(pair, err)
        T.eq(type(pair.cert), "cdata")
        T.eq(type(pair.key), "cdata")
    end
end

cases["bodies are refused naming the uid or host at fault"] = function()
    local ec = fixture("ec.pem")
    local function refused(tbl, part, replace)
        local parsed, err = parse(tbl, replace)
        T.is_nil(parsed, part)
        T.contains(err, part)
    end
    refused({ certificates = { u1 = ec, u2 = fixture("cert-only.pem") } },
            'certificates["u2"]: no private key that parses')
    refused({ certificates = { u1 = "-----BEGIN CERTIFICATE-----\nxx\n" } },
            'certificates["u1"]: no certificate that parses')
    refused({ certificates = { u1 = 7 } }, 'certificates["u1"] must be a PEM string')
    refused({ certificates = { ["u 1"] = ec } }, 'certificates["u 1"]: a uid is')
    refused({ certificates = { u1 = ec }, servers = { ["A.com"] = "u1" } }, 'servers["A.com"]')
    refused({ certificates = { u1 = ec }, servers = { ["a.com"] = 5 } },
            'servers["a.com"]: 5 is not a certificate uid (or null to remove the host)')
    refused({ certificates = {}, servers = { ["a.com"] = "u9" } },
            'servers["a.com"]: certificate "u9" is not in the body', true)
    refused({ servers = { ["a.com"] = cjson.null } }, 'servers["a.com"]: null', true)
    refused({ certificates = { u1 = ec }, extra = 1 }, 'unknown key "extra"')
    refused({ certificates = { "x" } }, '"certificates" must be an object')
    local parsed, err = certificates.parse("[1]")
    T.is_nil(parsed)
    T.contains(err, "body must be a JSON object")
end

cases["POST stores both maps in one version; GET shows no key material"] = function()
    local dict = T.fresh_dict()
    local v, n = write(dict, "upsert", { certificates = { u1 = fixture("ec.pem") },
                                         servers = { ["a.com"] = "u1", ["*.b.com"] = "u1" } })
    T.eq({ v, n }, { 1, 3 })
    T.eq(stored(dict), { version = 1, servers = { ["a.com"] = "u1", ["*.b.com"] = "u1" },
                         certificates = { "u1" } })
    T.is_nil(certificates.list(dict):find("PRIVATE", 1, true), "no key in GET")
    T.eq(store.version(dict), 0, "backends' version untouched")
    T.eq(store.routes:version(dict), 0, "routes' version untouched")
end

cases["a rotation prunes the uid no host names any more"] = function()
    local dict = T.fresh_dict()
    write(dict, "upsert", { certificates = { u1 = fixture("ec.pem") },
                            servers = { ["a.com"] = "u1", ["c.com"] = "u1" } })
    write(dict, "upsert", { certificates = { u2 = fixture("rsa.pem") },
                            servers = { ["a.com"] = "u2" } })
    T.eq(stored(dict).certificates, { "u1", "u2" }, "c.com still names u1")
    local v, n = write(dict, "upsert", { servers = { ["c.com"] = "u2" } })
    T.eq({ v, n }, { 3, 2 }, "c.com changed, u1 pruned")
    T.eq(stored(dict), { version = 3, servers = { ["a.com"] = "u2", ["c.com"] = "u2" },
                         certificates = { "u2" } })
    T.is_nil(dict:get("certificate:pem:u1"))
    -- a POST may name a stored uid without sending its PEM again; null removes a host
    write(dict, "upsert", { servers = { ["d.com"] = "u2", ["a.com"] = cjson.null } })
    T.eq(stored(dict).servers, { ["c.com"] = "u2", ["d.com"] = "u2" })
end

cases["a POST naming a uid neither sent nor stored stores nothing"] = function()
    local dict = T.fresh_dict()
    write(dict, "upsert", { certificates = { u1 = fixture("ec.pem") },
                            servers = { ["a.com"] = "u1" } })
    local parsed = parse({ servers = { ["b.com"] = "nope", ["a.com"] = "u1" } })
    local v, err, status = certificates.write(dict, "upsert", parsed)
    T.is_nil(v)
    T.eq(status, 400)
    T.contains(err, 'servers["b.com"]: certificate "nope" is neither in the body nor stored')
    T.eq(stored(dict).version, 1)
end

cases["certificates nobody names are not stored; PUT replaces both maps"] = function()
    local dict = T.fresh_dict()
    local v, n = write(dict, "upsert", { certificates = { u1 = fixture("ec.pem") } })
    T.eq({ v, n }, { 0, 0 })
    write(dict, "upsert", { certificates = { u1 = fixture("ec.pem") },
                            servers = { ["a.com"] = "u1" } })
    v = write(dict, "replace", { certificates = { u2 = fixture("rsa.pem"),
                                                  u3 = fixture("ec.pem") },
                                 servers = { ["b.com"] = "u2" } })
    T.eq(v, 2)
    T.eq(stored(dict), { version = 2, servers = { ["b.com"] = "u2" },
                         certificates = { "u2" } })
    T.eq(cjson.decode(dict:get("certificates:log:2")),
         { "pem:u2", "server:b.com", "pem:u1", "server:a.com" }, "by name")
end

-- A synced view of a.foo.com -> "exact" and *.foo.com -> "wild".
local function exact_and_wildcard_view()
    local dict = T.fresh_dict()
    write(dict, "upsert", { certificates = { exact = fixture("ec.pem"),
                                             wild = fixture("rsa.pem") },
                            servers = { ["a.foo.com"] = "exact", ["*.foo.com"] = "wild" } })
    local view = certificates.new_view(dict)
    certificates.sync(view)
    return view
end

cases["the worker view: exact host, one-label wildcard, else nothing"] = function()
    local view = exact_and_wildcard_view()
    T.eq(certificates.find_uid(view, "a.foo.com"), "exact")
    T.eq(certificates.find_uid(view, "b.foo.com"), "wild")
    T.is_nil(certificates.find_uid(view, "a.b.foo.com"), "one label only")
    T.is_nil(certificates.find_uid(view, "foo.com"))
    T.is_nil(certificates.find_uid(view, "other.org"))
end

cases["a routed host without a certificate of its own gets no wildcard's"] = function()
    local view = exact_and_wildcard_view()
    local routed = { ["a.foo.com"] = true, ["c.foo.com"] = true }
    local function is_routed(name)
        return routed[name] == true
    end
    T.eq(certificates.find_uid(view, "a.foo.com", is_routed), "exact", "its own")
    T.is_nil(certificates.find_uid(view, "c.foo.com", is_routed), "routed, none of its own")
    T.eq(certificates.find_uid(view, "b.foo.com", is_routed), "wild", "not routed")
end

cases["each uid is parsed once per worker; a changed PEM is parsed again"] = function()
    local dict = T.fresh_dict()
    write(dict, "upsert", { certificates = { u1 = fixture("ec.pem") },
                            servers = { ["a.com"] = "u1", ["b.com"] = "u1" } })
    local view = certificates.new_view(dict)
    certificates.sync(view)
    local p1 = certificates.pair(view, "u1")
    T.truthy(p1)
    T.truthy(certificates.pair(view, certificates.find_uid(view, "b.com")) == p1, "cached")
    T.eq(view.stats.parsed, 1)
    -- same uid, new content (the controller should use a new uid, but must not be trusted to)
    write(dict, "upsert", { certificates = { u1 = fixture("rsa.pem") } })
    certificates.sync(view)
    T.eq(view.stats.incremental, 1)
    local p2 = certificates.pair(view, "u1")
    T.truthy(p2 ~= p1, "parsed again")
    T.eq(view.stats.parsed, 2)
    -- after a full load (a view too far behind), unchanged PEMs stay cached, changed ones
    -- are dropped
    write(dict, "replace", { certificates = { u1 = fixture("rsa.pem"), u2 = fixture("ec.pem") },
                             servers = { ["a.com"] = "u1", ["c.com"] = "u2" } })
    view.version = -1
    certificates.sync(view)
    T.eq(view.stats.full_loads, 2)
    T.truthy(certificates.pair(view, "u1") == p2, "unchanged PEM kept")
    write(dict, "replace", { certificates = { u1 = fixture("ec.pem") },
                             servers = { ["a.com"] = "u1" } })
    view.version = -1
    certificates.sync(view)
    T.eq(view.stats.full_loads, 3)
    T.truthy(certificates.pair(view, "u1") ~= p2, "changed PEM dropped")
end

cases["the cache is bounded"] = function()
    local dict = T.fresh_dict()
    local certs, servers = {}, {}
    for i = 1, 5 do
        certs["u" .. i] = fixture("ec.pem")
        servers["h" .. i .. ".com"] = "u" .. i
    end
    write(dict, "upsert", { certificates = certs, servers = servers })
    local view = certificates.new_view(dict, 2)
    certificates.sync(view)
    for i = 1, 5 do
        T.truthy(certificates.pair(view, "u" .. i))
    end
    T.eq(view.cache:count(), 2)
    T.eq(view.stats.parsed, 5)
    certificates.pair(view, "u1")
    T.eq(view.stats.parsed, 6, "u1 was evicted and parsed again")
    local pair, err = certificates.pair(view, "nope")
    T.is_nil(pair)
    T.eq(err, "not stored")
end

return cases
