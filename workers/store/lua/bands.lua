-- Shared by the scripts that move jobs between a ready score (in its priority's band) and a
-- waiting one (the time it waits for, the priority as a tag in the fraction): priority.py.
-- `offset_of(score)` reads the band of a ready score or the tag of a waiting one.
local BAND = $BAND
local OFFSET_OF_TAG = {[0] = $OFFSET_NORMAL, [1] = $OFFSET_URGENT,
                       [2] = $OFFSET_HIGH, [3] = $OFFSET_LOW}
local TAG_OF_OFFSET = {[$OFFSET_NORMAL] = 0, [$OFFSET_URGENT] = 1,
                       [$OFFSET_HIGH] = 2, [$OFFSET_LOW] = 3}
local function offset_of(score)
    if score >= 0 then
        local tag = math.floor((score - math.floor(score)) * 8 + 0.5)
        return OFFSET_OF_TAG[tag] or OFFSET_OF_TAG[0]
    end
    return math.ceil(-score / BAND) * BAND
end
local function fmt(score) return string.format('%.3f', score) end
