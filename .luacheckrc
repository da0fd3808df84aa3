-- luacheck over lua/ (make lint): LuaJIT inside nginx's lua-nginx-module.
std = "luajit"
-- ngx is the module's global API; tests replace parts of it (ngx.now, ngx.log).
globals = { "ngx" }
max_line_length = 100
