-- Append one record to the audit trail and trim it, in one step.
-- KEYS: the audit stream. ARGV: the most records kept, the retention in ms, the record (JSON).
-- The new entry's id is Redis's clock in ms, so records older than the retention are those
-- with an id below it: both trims are exact (each write removes about one old record).
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[1], '*', 'record', ARGV[3])
local ms = tonumber(string.match(id, '^(%d+)'))
local oldest = ms - tonumber(ARGV[2])
if oldest > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', '=', oldest)
end
return id
