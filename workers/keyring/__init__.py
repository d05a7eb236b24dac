"""The AES-256-GCM keyring: keys by id, one active key that seals, any held key opens.

One keyring serves the stored messages (tasks/encryption) and the jobs' payloads in Redis
(workers/store/sealing.py), loaded from `POSTROOM_ENCRYPTION__*` (config/encryption.py).
"""
