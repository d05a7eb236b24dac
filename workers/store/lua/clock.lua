-- Redis's own clock in ms: what a lease's end in the active set is measured on, so that a
-- worker whose clock runs ahead cannot take a live run for a lapsed one.
local function clock_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
