-- Renew a RabbitMQ event's claim (events/rabbitmq/claim.py) if this run still holds it.
-- KEYS: the claim. ARGV: the run's token, the claim's time to live in milliseconds.
-- Returns 1 when renewed, 0 when the claim lapsed or another run holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
