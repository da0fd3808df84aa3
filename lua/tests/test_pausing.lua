-- Long loops of the control endpoint pause for other requests (ingressd.pausing): by time, not
-- by count, with a real sleep (never ngx.sleep(0)), and not at all outside the content phase.

local T = require("tests.assert")
local pausing = require("ingressd.pausing")

local cases = {}

-- A fake clock advanced by hand, and a sleep that records its arguments.
local function fakes()
    local f = { now = 0, sleeps = {} }
    f.clock = function()
        return f.now
    end
    f.sleep = function(seconds)
        f.sleeps[#f.sleeps + 1] = seconds
    end
    return f
end

cases["a pauser sleeps once per slice of work, for PAUSE seconds"] = function()
    local f = fakes()
    local pause = pausing.pauser(f.sleep, f.clock)
    for _ = 1, 10 * pausing.CHECK_EVERY do
        pause() -- no time passes: no pause
    end
    T.eq(#f.sleeps, 0)
    f.now = pausing.SLICE
    for _ = 1, pausing.CHECK_EVERY do
        pause()
    end
    T.eq(f.sleeps, { pausing.PAUSE })
    T.truthy(pausing.PAUSE > 0, "a real timer: ngx.sleep(0) warns on Debian's module")
    for _ = 1, pausing.CHECK_EVERY do
        pause()
    end
    T.eq(#f.sleeps, 1, "the slice starts again after a pause")
end

cases["a pauser reads the clock once per CHECK_EVERY steps"] = function()
    local f = fakes()
    local reads = 0
    local pause = pausing.pauser(f.sleep, function()
        reads = reads + 1
        return f.clock()
    end)
    reads = 0
    for _ = 1, 4 * pausing.CHECK_EVERY do
        pause()
    end
    T.eq(reads, 4)
end

cases["a real pause lets the loop go on and takes about PAUSE"] = function()
    local saved = pausing.SLICE
    pausing.SLICE = 0
    local pause = pausing.pauser()
    ngx.update_time()
    local t0 = ngx.now()
    for _ = 1, pausing.CHECK_EVERY do
        pause()
    end
    ngx.update_time()
    pausing.SLICE = saved
    T.truthy(ngx.now() - t0 >= pausing.PAUSE * 0.5, "slept")
end

return cases
