"""A FastAPI messaging app that stores messages and hands their delivery to postroom.

Run it with `scripts/example` (a worker beside it) and open http://127.0.0.1:8000/docs.
"""
