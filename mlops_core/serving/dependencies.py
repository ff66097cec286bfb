"""What a route may ask for, declared once as ``Annotated`` aliases (FastAPI's template's shape).

* ``ServerDep`` -- the app's ``ServerState``;
* ``AdminDep`` -- the Bearer-token check of the admin routes: a 403 while ``MLOPS_ADMIN_TOKEN``
  is unset (admin routes disabled), a 401 for a missing or wrong token.
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
    """Nothing when ``authorization`` carries the admin token; a 403 or 401 otherwise."""
    settings = server.settings
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not token:
        raise HTTPException(403, detail="admin routes are disabled: set MLOPS_ADMIN_TOKEN")
    # A constant-time comparison, so the answer's timing tells nothing about the token.
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, detail="missing or wrong admin token")


AdminDep = Annotated[None, Depends(require_admin)]
