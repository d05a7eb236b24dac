"""Credentials inside text: the password of every `scheme://user:password@host` becomes `***`.

A URL with a password reaches text in many ways (a setting's error, a provider's exception
quoting the URL it called, a payload field); whatever prints text an operator or a log
shipper sees passes it through here.
"""

from __future__ import annotations

import re

MASK = "***"
# After "://": the user, ":", the password up to the last "@" before a space or "/" (a raw
# "@" in a password is not a way out).
_USER_INFO = re.compile(r"[^\s:/@]*:[^\s/]*@")


def redact_credentials(text: str) -> str:
    """`text` with each URL's password replaced by `***` (the user name is kept)."""
    if "@" not in text or "://" not in text:  # the common case costs two scans
        return text
    parts: list[str] = []
    done = 0
    start = text.find("://")
    while start != -1:
        begin = start + 3
        found = _USER_INFO.match(text, begin)
        if found:
            user = text[begin : text.index(":", begin)]
            parts += [text[done:begin], user, ":", MASK, "@"]
            done = found.end()
        start = text.find("://", found.end() if found else begin)
    return "".join(parts) + text[done:] if parts else text
