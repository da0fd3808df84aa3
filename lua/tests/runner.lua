-- tests.runner: runs the Lua unit tests inside a real nginx worker.
--
-- Each lua/tests/test_*.lua file returns a table {case name -> function}. http(dir) (called from
-- content_by_lua) loads every file (or only ?file=NAME), pcalls each case in name order and
-- answers {"files": [...], "results": [{file, name, ok, err}]}. A file that fails to load is
-- reported as a failing case named "<load>".

local cjson = require("cjson.safe")

local _M = {}

local function list_files(dir)
    local files = {}
    local p = io.popen('ls -1 "' .. dir .. '"')
    if p == nil then
        return files
    end
    for line in p:lines() do
        if line:match("^test_.*%.lua$") then
            files[#files + 1] = line
        end
    end
    p:close()
    table.sort(files)
    return files
end

local function traceback(err)
    return debug.traceback(tostring(err), 2)
end

function _M.run_file(dir, file)
    local results = {}
    local chunk, err = loadfile(dir .. "/" .. file)
    local cases
    if chunk ~= nil then
        local ok, value = xpcall(chunk, traceback)
        if ok and type(value) == "table" then
            cases = value
        else
            err = ok and "test file did not return a table of cases" or value
        end
    end
    if cases == nil then
        results[1] = { file = file, name = "<load>", ok = false, err = tostring(err) }
        return results
    end
    local names = {}
    for name in pairs(cases) do
        names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
        local ok, cerr = xpcall(cases[name], traceback)
        results[#results + 1] = { file = file, name = name, ok = ok,
                                  err = (not ok) and tostring(cerr) or nil }
    end
    return results
end

function _M.http(dir)
    local only = ngx.req.get_uri_args().file
    local files = only and { only } or list_files(dir)
    local results = {}
    for _, file in ipairs(files) do
        for _, r in ipairs(_M.run_file(dir, file)) do
            results[#results + 1] = r
        end
    end
    ngx.header["Content-Type"] = "application/json"
    -- cjson encodes an empty table as {}: say [] explicitly
    local body = cjson.encode({ files = files, results = results })
    if #results == 0 then
        body = '{"files":[],"results":[]}'
    end
    ngx.say(body)
end

return _M
