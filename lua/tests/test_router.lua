-- The router (ingressd.router): host and path matching as docs/routing.md "Matching" says
-- (the answers nginx gives for the same Ingresses with --routing nginx), and the worker view:
-- incremental updates, removals, alias claims.

local T = require("tests.assert")
local store = require("ingressd.store")
local router = require("ingressd.router")
local cjson = require("cjson.safe")

local function loc(typ, path, backend, extra)
    local l = { type = typ, path = path, class = "c1", backend = backend }
    for k, v in pairs(extra or {}) do
        l[k] = v
    end
    return l
end

local function entry(host, locations, extra)
    local e = { host = host, locations = locations or {} }
    for k, v in pairs(extra or {}) do
        e[k] = v
    end
    return { name = host, raw = cjson.encode(e) }
end

-- A synced view of a fresh dict holding `entries`.
local function view_of(entries)
    local dict = T.fresh_dict()
    local v, err = store.routes:write(dict, "upsert", entries)
    T.truthy(v, err)
    local view = router.new_view(dict)
    router.sync(view)
    return view, dict
end

-- The backend (or "404", or "status <n>") a request for host/uri gets, and the entry's host.
local function answer(view, host, uri)
    local e, l = router.find(view, host, uri)
    if e == nil or l == nil then
        return "404", e and e.host
    end
    return l.backend or ("status " .. l.status), e.host
end

local function expect(view, host, want)
    for uri, backend in pairs(want) do
        T.eq(answer(view, host, uri), backend, host .. uri)
    end
end

local cases = {}

cases["exact beats prefix on the same path, prefix keeps the rest"] = function()
    local view = view_of({ entry("a.com", {
        loc("prefix", "/foo", "prefix"), loc("exact", "/foo", "exact") }) })
    expect(view, "a.com", { ["/foo"] = "exact", ["/foo/"] = "prefix", ["/foo/x"] = "prefix",
                            ["/foox"] = "404", ["/"] = "404" })
end

cases["the longest prefix wins, element-wise"] = function()
    local view = view_of({ entry("a.com", {
        loc("prefix", "/", "root"), loc("prefix", "/a", "a"), loc("prefix", "/a/b", "ab") }) })
    expect(view, "a.com", { ["/a/b/c"] = "ab", ["/a/b"] = "ab", ["/a/b/"] = "ab",
                            ["/a/bc"] = "a", ["/a"] = "a", ["/ab"] = "root", ["/x"] = "root",
                            ["/"] = "root", ["/A/b"] = "root" })
end

cases["/aaa matches /aaa and /aaa/..., not /aaaccc"] = function()
    local view = view_of({ entry("a.com", { loc("prefix", "/aaa", "aaa") }) })
    expect(view, "a.com", { ["/aaa"] = "aaa", ["/aaa/"] = "aaa", ["/aaa/ccc"] = "aaa",
                            ["/aaaccc"] = "404", ["/aa"] = "404" })
end

cases["a trailing slash on a prefix path is ignored"] = function()
    local view = view_of({ entry("a.com", { loc("prefix", "/foo/", "foo"),
                                            loc("exact", "/bar/", "bar-exact") }) })
    expect(view, "a.com", { ["/foo"] = "foo", ["/foo/"] = "foo", ["/foo/x"] = "foo",
                            ["/bar/"] = "bar-exact", ["/bar"] = "404" })
end

cases["regexes: longest first, ties by path, case-insensitive, anchored"] = function()
    local view = view_of({ entry("a.com", {
        loc("regex", "/api/.*", "api"),
        loc("regex", "/api/v1/.*", "v1"),
        loc("regex", "/b.", "b-dot"),
        loc("regex", "/a..", "a-dots"),
        loc("regex", "/bz", "bz"),
    }) })
    expect(view, "a.com", { ["/api/v1/x"] = "v1", ["/API/V1/X"] = "v1", ["/api/v2"] = "api",
                            ["/x/api/v1/"] = "404",
                            -- equal lengths go by path: "/b." before "/bz"
                            ["/bz"] = "b-dot", ["/abc"] = "a-dots" })
end

cases["a regex beats a shorter prefix but not an exact location"] = function()
    local view = view_of({ entry("a.com", {
        loc("prefix", "/api", "prefix"),
        loc("exact", "/api/v1", "exact"),
        loc("regex", "/api/v[0-9]+", "regex"),
        loc("regex", "/ap.*", "ap"),
    }) })
    expect(view, "a.com", {
        ["/api/v2"] = "regex", ["/api/v1"] = "exact", ["/api/v1/x"] = "regex",
        ["/api"] = "prefix",       -- the exact form of Prefix /api ends the search
        ["/api/x"] = "ap",         -- a prefix match lets the regexes speak
    })
end

cases["Prefix / has no exact form: a regex still wins for /"] = function()
    local view = view_of({ entry("a.com", { loc("prefix", "/", "root"),
                                            loc("regex", "/.*", "any") }) })
    expect(view, "a.com", { ["/"] = "any", ["/x"] = "any" })
    view = view_of({ entry("a.com", { loc("prefix", "/", "root"),
                                      loc("regex", "/x.*", "x") }) })
    expect(view, "a.com", { ["/"] = "root", ["/xy"] = "x", ["/y"] = "root" })
end

cases["hosts: exact, then alias, then one-label wildcard, then _"] = function()
    local view = view_of({
        entry("_", { loc("prefix", "/", "catch-all") }),
        entry("*.foo.com", { loc("prefix", "/", "wildcard") }),
        entry("a.foo.com", { loc("prefix", "/", "exact") }),
        entry("www.x.com", { loc("prefix", "/", "www") }, { aliases = { "x.com", "*.y.com" } }),
    })
    T.eq({ answer(view, "a.foo.com", "/") }, { "exact", "a.foo.com" })
    T.eq({ answer(view, "b.foo.com", "/") }, { "wildcard", "*.foo.com" })
    T.eq({ answer(view, "a.b.foo.com", "/") }, { "catch-all", "_" }, "one label only")
    T.eq({ answer(view, "foo.com", "/") }, { "catch-all", "_" })
    T.eq({ answer(view, "x.com", "/") }, { "www", "www.x.com" }, "alias")
    T.eq({ answer(view, "z.y.com", "/") }, { "www", "www.x.com" }, "wildcard alias")
    T.eq({ answer(view, "unknown.org", "/") }, { "catch-all", "_" })
    T.eq({ answer(view, "", "/") }, { "catch-all", "_" }, "no host")
    T.eq({ answer(view, nil, "/") }, { "catch-all", "_" }, "no host at all")
end

cases["no entry for the host and no _: no route"] = function()
    local view = view_of({ entry("a.com", { loc("prefix", "/", "a") }) })
    T.eq({ answer(view, "b.com", "/") }, { "404", nil })
    expect(view, "a.com", { ["/"] = "a" })
end

cases["locations without backend, defaults of status and maxBody"] = function()
    local view = view_of({ entry("a.com", {
        loc("prefix", "/deny", nil, { status = 403 }),
        loc("prefix", "/gone", nil),
        loc("prefix", "/big", "big", { maxBody = 0, namespace = "ns", ingress = "ing",
                                       defaultBackend = "fallback", class = "cab12" }),
        loc("prefix", "/small", "small", { maxBody = 10 }),
        loc("prefix", "/default", "default"),
    }) })
    expect(view, "a.com", { ["/deny/x"] = "status 403", ["/gone"] = "status 503" })
    local _, big = router.find(view, "a.com", "/big")
    T.eq({ big.max_body, big.namespace, big.ingress, big.default_backend, big.target },
         { 0, "ns", "ing", "fallback", "@cab12" })
    local _, small = router.find(view, "a.com", "/small")
    T.eq(small.max_body, 10)
    local _, default = router.find(view, "a.com", "/default")
    T.eq({ default.max_body, default.namespace, default.ingress, default.default_backend },
         { 1048576, "", "", "" })
end

cases["service and servicePort are kept only for routes that carry them"] = function()
    local view = view_of({ entry("a.com", {
        loc("prefix", "/err", "web", { service = "web", servicePort = "80" }),
        loc("prefix", "/plain", "web"),
    }) })
    local _, err = router.find(view, "a.com", "/err")
    T.eq({ err.service_name, err.service_port }, { "web", "80" })
    local _, plain = router.find(view, "a.com", "/plain")
    T.eq({ plain.service_name, plain.service_port }, { nil, "" })
end

cases["hsts and appRoot are compiled per entry"] = function()
    local view = view_of({
        entry("a.com", {}, { hsts = "max-age=1", appRoot = "/app" }),
        entry("b.com", {}, { hsts = false, appRoot = cjson.null }),
    })
    local a = router.find(view, "a.com", "/")
    T.eq({ a.hsts, a.app_root }, { "max-age=1", "/app" })
    local b = router.find(view, "b.com", "/")
    T.eq({ b.hsts, b.app_root }, { nil, nil })
end

cases["updates decode only the changed hosts; unchanged entries are kept"] = function()
    local view, dict = view_of({ entry("a.com", { loc("prefix", "/", "a1") }),
                                 entry("b.com", { loc("prefix", "/", "b1") }) })
    local b_entry = view.entries["b.com"]
    local decoded = view.stats.decoded
    store.routes:write(dict, "upsert", { entry("a.com", { loc("prefix", "/", "a2") }),
                                         entry("b.com", { loc("prefix", "/", "b1") }),
                                         entry("c.com", { loc("prefix", "/", "c1") }) })
    router.sync(view)
    T.eq(view.stats.decoded - decoded, 2, "a and c")
    T.eq(view.stats.full_loads, 1)
    T.eq(view.stats.incremental, 1)
    T.truthy(view.entries["b.com"] == b_entry, "b kept as is")
    expect(view, "a.com", { ["/"] = "a2" })
    expect(view, "c.com", { ["/"] = "c1" })
    -- a replace is logged by name too (a PUT that changes little costs little)
    store.routes:write(dict, "replace", { entry("b.com", { loc("prefix", "/", "b1") }) })
    router.sync(view)
    T.eq({ view.stats.full_loads, view.stats.incremental }, { 1, 2 })
    T.truthy(view.entries["b.com"] == b_entry, "b kept over a PUT")
    T.eq({ answer(view, "a.com", "/") }, { "404", nil })
    -- a full load (too far behind) keeps unchanged entries too
    store.routes:write(dict, "upsert", { entry("d.com") }, { log_size = 0 })
    dict:delete(store.routes.log_prefix .. store.routes:version(dict))
    router.sync(view)
    T.eq(view.stats.full_loads, 2)
    T.truthy(view.entries["b.com"] == b_entry, "b kept over a full load")
    T.truthy(view.entries["d.com"] ~= nil)
    T.is_nil(view.entries["a.com"])
end

cases["removing a host removes its aliases; a shared alias falls to the other claimant"] =
function()
    local view, dict = view_of({
        entry("b.com", { loc("prefix", "/", "b") }, { aliases = { "shared.com", "a.com" } }),
        entry("c.com", { loc("prefix", "/", "c") }, { aliases = { "shared.com" } }),
        entry("a.com", { loc("prefix", "/", "a") }),
    })
    T.eq(answer(view, "a.com", "/"), "a", "an entry's own host beats another's alias")
    T.eq(answer(view, "shared.com", "/"), "b", "the smallest host among claimants")
    store.routes:write(dict, "upsert", {}, { delete = { "a.com", "b.com" } })
    router.sync(view)
    T.eq(answer(view, "shared.com", "/"), "c")
    T.eq(answer(view, "a.com", "/"), "404", "b's alias went with b")
    store.routes:write(dict, "upsert", { entry("b.com", { loc("prefix", "/", "b") },
                                               { aliases = { "a.com" } }) })
    router.sync(view)
    T.eq(answer(view, "a.com", "/"), "b")
    T.eq(answer(view, "shared.com", "/"), "c")
    -- a fresh view of the same table agrees, whatever the order of updates
    local fresh = router.new_view(dict)
    router.sync(fresh)
    for _, host in ipairs({ "a.com", "b.com", "c.com", "shared.com" }) do
        T.eq(answer(fresh, host, "/"), answer(view, host, "/"), host)
    end
end

cases["a corrupt text in the dict keeps the previous entry"] = function()
    local view, dict = view_of({ entry("a.com", { loc("prefix", "/", "a") }) })
    store.routes:write(dict, "upsert", { { name = "a.com", raw = "{oops" } })
    router.sync(view)
    T.eq(answer(view, "a.com", "/"), "a")
end

cases["many hosts: the lookup is a table access, not a scan"] = function()
    local entries = {}
    for i = 1, 2000 do
        entries[i] = entry("h" .. i .. ".example.com", {
            loc("prefix", "/", "root-" .. i), loc("prefix", "/api/v1", "api-" .. i) })
    end
    local view = view_of(entries)
    T.eq(answer(view, "h1234.example.com", "/api/v1/users"), "api-1234")
    T.eq(answer(view, "h2000.example.com", "/x"), "root-2000")
end

return cases
