"""``GET /health`` (the process is up) and ``GET /ready`` (a champion is loaded)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from mlops_core.serving.dependencies import ServerDep


def health() -> dict[str, str]:
    """``{"status": "ok"}`` while the process is up."""
    return {"status": "ok"}


def ready(server: ServerDep) -> JSONResponse:
    """What is served once a champion is loaded; a 503 before."""
    follower = server.follower
    if follower.snapshot.champion is None:
        return JSONResponse(status_code=503, content={"ready": False, "reason": "no champion"})
    return JSONResponse(content={"ready": True, **follower.describe()})
