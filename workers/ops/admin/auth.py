"""Bearer-token check of every admin endpoint but liveness, in constant time."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from workers.ops.admin.state import admin_state

bearer = HTTPBearer(
    auto_error=False,
    description="The admin token (POSTROOM_ADMIN_TOKEN), as `Authorization: Bearer <token>`.",
)


def token_digest(token: str) -> bytes:
    """What is compared: digests are all one length, so the time taken tells nothing of the
    token's length either."""
    return hashlib.sha256(token.encode()).digest()


def _refuse(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"}
    )


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Let the request through only with the admin token (any request when served
    local-only without one)."""
    expected = admin_state(request).token
    if expected is None:
        return
    if credentials is None:
        raise _refuse("missing bearer token: send 'Authorization: Bearer <POSTROOM_ADMIN_TOKEN>'")
    if not hmac.compare_digest(token_digest(credentials.credentials), expected):
        raise _refuse("invalid bearer token")
