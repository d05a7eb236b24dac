"""The Redis data model: every key name (keys.py), the Lua scripts, and the reads and writes
of jobs, results, dead letters, stats and leases."""
