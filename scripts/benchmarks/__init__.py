"""postroom's benchmark harness: postroom against arq, SAQ, Taskiq, streaq and BullMQ.

`scripts/bench` builds the virtualenvs and runs `benchmarks.run`, the orchestrator. The
orchestrator never imports a queue library: each system runs in subprocesses started with its
own virtualenv's interpreter (`benchmarks.agent` to enqueue, the library's own CLI or a small
runner to work), so peers whose redis-py clashes with arq 0.28's can take part.
"""
