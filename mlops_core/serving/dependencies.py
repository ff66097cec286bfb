"""What a route may ask for, declared once as ``Annotated`` aliases (FastAPI's template's shape).

* ``ServerDep`` -- the app's ``ServerState``;
* ``AdminDep`` -- the Bearer-token check of the admin routes (RFC 6750): a 403 while
  ``MLOPS_ADMIN_TOKEN`` is unset (admin routes disabled, whatever the request carries); a 401
  with ``WWW-Authenticate: Bearer`` when the ``Authorization`` header is missing, empty or names
  another scheme (a bare token, ``Basic ...``): only ``Bearer <token>`` is read, the scheme in any
  case (RFC 7235); a 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` for a wrong token.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from mlops_core.serving.state import ServerState


async def server_state(request: Request) -> ServerState:
    """The state of the server that received ``request``."""
    state: ServerState = request.app.state.server
    return state


ServerDep = Annotated[ServerState, Depends(server_state)]


async def require_admin(
    server: ServerDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Nothing when ``authorization`` is ``Bearer <the admin token>``; a 403 or 401 otherwise."""
    token = server.settings.admin_token
    if token is None or not token.get_secret_value():
        raise HTTPException(403, detail="admin routes are disabled: set MLOPS_ADMIN_TOKEN")
    check_bearer(authorization, token.get_secret_value(), "the admin token", "MLOPS_ADMIN_TOKEN")


def check_bearer(authorization: str | None, token: str, what: str, setting: str) -> None:
    """Nothing when ``authorization`` is ``Bearer <token>``; a 401 saying what to send otherwise."""
    # RFC 7235: credentials = auth-scheme [ 1*SP token68 ]; the scheme is case-insensitive.
    scheme, _, given = (authorization or "").strip().partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(
            401,
            detail=f"send {what} as 'Authorization: Bearer <{setting}>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # A constant-time comparison, so the answer's timing tells nothing about the token.
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            401,
            detail=f"wrong {what.removeprefix('the ')}: send 'Authorization: Bearer <{setting}>'",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


AdminDep = Annotated[None, Depends(require_admin)]
