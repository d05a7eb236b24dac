"""Alembic migrations of the message store (a package only so that wheels ship them).

Alembic loads `env.py` and `versions/` by path; nothing should import them.
"""
