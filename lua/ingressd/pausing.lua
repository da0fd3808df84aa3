-- ingressd.pausing: lets a long loop of a control-endpoint request (splitting, validating,
-- parsing thousands of items) give its worker back to the worker's other requests.
--
-- A pauser counts the loop's steps; every CHECK_EVERY steps it reads the clock and, after
-- SLICE seconds of work since the last pause, sleeps PAUSE seconds: the other requests of the
-- worker run at least every ~SLICE seconds, and the loop pays ~PAUSE / SLICE (10%) more.
-- ngx.sleep(0) would be cheaper, but Debian's lua-nginx-module lacks the patch it needs and
-- logs a warning on every call. Outside the content phase (where sleeping is not allowed) a
-- pauser does nothing.

local ngx = ngx
local ngx_sleep, ngx_now, update_time, get_phase = ngx.sleep, ngx.now, ngx.update_time,
    ngx.get_phase

local _M = {}

_M.SLICE = 0.01
_M.PAUSE = 0.001
_M.CHECK_EVERY = 32

local function noop()
end

-- A function to call once per step of a loop (or noop outside the content phase).
-- `sleep` and `clock` replace ngx.sleep and the clock (tests).
function _M.pauser(sleep, clock)
    if get_phase() ~= "content" then
        return noop
    end
    sleep = sleep or ngx_sleep
    clock = clock or function()
        update_time()
        return ngx_now()
    end
    local steps = 0
    local since = clock()
    return function()
        steps = steps + 1
        if steps % _M.CHECK_EVERY ~= 0 then
            return
        end
        local now = clock()
        if now - since >= _M.SLICE then
            sleep(_M.PAUSE)
            since = clock()
        end
    end
end

return _M
