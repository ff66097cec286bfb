"""``POST /admin/refresh``: follow the registry now (``Authorization: Bearer <MLOPS_ADMIN_TOKEN>``)."""

from __future__ import annotations

from typing import Any

from mlops_core.serving.dependencies import AdminDep, ServerDep


def refresh(_admin: AdminDep, server: ServerDep) -> dict[str, Any]:
    """Whether the models changed, and what is served now."""
    changed = server.follower.refresh()
    return {"changed": changed, **server.follower.describe()}
