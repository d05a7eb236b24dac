"""The RabbitMQ transport of the event bus (`POSTROOM_EVENT_TRANSPORT=rabbitmq`).

Events leave the deployment: a durable topic exchange (`POSTROOM_EVENT_EXCHANGE`, default
`postroom.events`) routes each event by its type to one durable queue per consuming handler
group (`<exchange>.<group>`), which any service in any language may also bind. publisher.py
publishes with confirms; consumer.py (`postroom events --transport rabbitmq`) runs a group's
`@on` handlers, acks after them, retries through TTL wait queues and dead-letters into
`<exchange>.<group>.dead`, which dead_letters.py lists, retries and purges for the admin
tools. topology.py names and declares all of it; the envelope is workers/events/envelope.py.

Only publisher.py is reached from the client side (workers.events.bus); the rest is the
consumer's and the operator's.
"""
