"""The generated key file: created once, atomically and private (0600), reused on restarts.

Several worker processes may start at the same moment on one machine; the file is written
under a temporary name and hard-linked into place, so exactly one key wins and every process
reads that one (a plain rename would let a late process replace a key already in use).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

KEY_BYTES = 32
FILE_MODE = 0o600

logger = logging.getLogger(__name__)


class KeyFileError(ValueError):
    """Raised when an existing key file does not hold a base64 32-byte key."""


def read_key_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("encryption key file %s is readable by others (mode %o)", path, mode)
    try:
        key = base64.b64decode(path.read_bytes().strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{path} does not hold a base64 key") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path} holds a {len(key)}-byte key, expected {KEY_BYTES}")
    return key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_or_create_key_file(path: Path) -> tuple[bytes, bool]:
    """The key in `path`, generating it first if the file does not exist; (key, created)."""
    if path.exists():
        return read_key_file(path), False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    key = os.urandom(KEY_BYTES)
    _write_private(temporary, base64.b64encode(key) + b"\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        # Another process created it meanwhile: its key is the one in use.
        return read_key_file(path), False
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _fsync_dir(path.parent)
    return key, True
