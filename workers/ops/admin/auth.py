"""Bearer-token check of every admin endpoint but liveness, in constant time, and the role
check of every change: a `read-only` token gets 403 on anything but GET.

Each request's token is matched against every configured token's digest, whichever matches,
so the time taken says nothing of which one (or of a token's length). The match becomes the
request's `Principal` (its name and role), which the audit trail records; the token itself
is never logged or stored. Refusals (401, 403) are recorded by the routes (audit.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from workers.ops.admin.state import LOCAL, KnownToken, Principal, admin_state

bearer = HTTPBearer(
    auto_error=False,
    description=(
        "An admin token (POSTROOM_ADMIN_TOKEN, or one of POSTROOM_ADMIN_TOKENS), as "
        "`Authorization: Bearer <token>`. A read-only token may only GET."
    ),
)
# What a read-only token may do: look.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_digest(token: str) -> bytes:
    """What is compared: digests are all one length, so the time taken tells nothing of the
    token's length either."""
    return hashlib.sha256(token.encode()).digest()


def identify(tokens: Sequence[KnownToken], presented: str) -> Principal | None:
    """The principal whose token `presented` is; every token is compared, match or not."""
    digest = token_digest(presented)
    found: Principal | None = None
    for known in tokens:
        if hmac.compare_digest(digest, known.digest):
            found = known.principal
    return found


def _refuse(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"}
    )


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Let the request through only with a known token (any request when served local-only
    without one), and a change only with an operator's."""
    tokens = admin_state(request).tokens
    if not tokens:
        principal = LOCAL
    elif credentials is None:
        raise _refuse("missing bearer token: send 'Authorization: Bearer <POSTROOM_ADMIN_TOKEN>'")
    else:
        found = identify(tokens, credentials.credentials)
        if found is None:
            raise _refuse("invalid bearer token")
        principal = found
    request.state.principal = principal
    if request.method not in SAFE_METHODS and not principal.may_change:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the token {principal.name!r} is {principal.role}: it may not change anything",
        )
    return principal
