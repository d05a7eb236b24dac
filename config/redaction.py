"""Credentials inside text: the password of every `scheme://user:password@host` becomes `***`.

A URL with a password reaches text in many ways (a setting's error, a provider's exception
quoting the URL it called, a payload field); whatever prints text an operator or a log
shipper sees passes it through here.
"""

from __future__ import annotations

import re

MASK = "***"
# The password runs to the last "@" before a space or "/": a raw "@" in it is not a way out.
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s/]*@", re.IGNORECASE)


def redact_credentials(text: str) -> str:
    """`text` with each URL's password replaced by `***` (the user name is kept)."""
    if "@" not in text or "://" not in text:  # the common case costs two scans
        return text
    return _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
