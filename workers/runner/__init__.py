"""The worker side: the supervisor, each queue's claim -> run -> finish loop, a run's
execution and its observation, cron."""
