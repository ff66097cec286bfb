"""``POST /admin/refresh``: follow the registry now (``Authorization: Bearer <MLOPS_ADMIN_TOKEN>``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header

from mlops_core.serving.dependencies import AdminDep, ServerDep
from mlops_core.serving.workers import FORWARDED, ask_others


def refresh(
    _admin: AdminDep,
    server: ServerDep,
    authorization: Annotated[str | None, Header()] = None,
    forwarded: Annotated[str | None, Header(alias=FORWARDED)] = None,
) -> dict[str, Any]:
    """Whether the models changed, and what is served now; behind ``--workers``, every worker
    refreshes (``workers_refreshed`` counts those that answered)."""
    changed = server.follower.refresh()
    answer: dict[str, Any] = {"changed": changed, **server.follower.describe()}
    if server.workers is not None and not forwarded:
        others = ask_others(
            server.workers,
            "POST",
            "/admin/refresh",
            headers={"authorization": authorization or ""},
        )
        answer["workers_refreshed"] = 1 + sum(
            not isinstance(a, Exception) and a.status_code == 200 for _, a in others
        )
        answer["workers"] = len(server.workers.peers)
    return answer
