-- Release a RabbitMQ event's claim (events/rabbitmq/claim.py) if this run still holds it.
-- KEYS: the claim. ARGV: the run's token. Returns 1 when released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
