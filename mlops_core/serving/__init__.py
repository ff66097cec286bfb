"""The model server (FastAPI): follows the registry, routes by rollout state, logs its traffic."""

from mlops_core.serving.app import create_app

__all__ = ["create_app"]
