"""``GET /health`` (the process is up) and ``GET /ready`` (a champion is loaded)."""

from __future__ import annotations

import os
from typing import Any

from fastapi.responses import JSONResponse

from mlops_core.serving.dependencies import ServerDep


def health(server: ServerDep) -> dict[str, Any]:
    """``{"status": "ok"}`` while the process is up; behind ``--workers``, also which worker
    answered and its process id."""
    if server.workers is None:
        return {"status": "ok"}
    return {"status": "ok", "worker": server.workers.index, "pid": os.getpid()}


def ready(server: ServerDep) -> JSONResponse:
    """What is served once a champion is loaded; a 503 before."""
    follower = server.follower
    if follower.snapshot.champion is None:
        return JSONResponse(status_code=503, content={"ready": False, "reason": "no champion"})
    return JSONResponse(content={"ready": True, **follower.describe()})
