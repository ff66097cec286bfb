"""Request ids a model server can recognise as its own, so feedback labels only its predictions.

``/feedback`` writes training labels. Before this, any caller that reached the server could send
labels for any id, and they were joined to processed batches and drove observed accuracy,
retraining and rollback. Now every request id the server issues carries a tag: the first 64
bits of HMAC-SHA256 of the id under a server key. ``/feedback`` accepts a ``request_id`` only
when its tag is right, so labels can be sent only for predictions a server sharing that key
made. Forging one means guessing a 64-bit tag. Feedback naming a record's own ``id`` cannot be
checked that way, so it needs the labelling token (``MLOPS_LABELS_TOKEN``, sent as
``Authorization: Bearer``). That token is for a trusted labelling service, as files an operator
submits are trusted.

The key is ``MLOPS_FEEDBACK_KEY`` when set. Replicas on several machines must share it, so that
feedback reaching any of them is recognised. Unset, it is ``<home>/secrets/feedback.key``,
created once (mode 0600) and shared by every worker and replica that shares the home.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from mlops_core.settings import Settings

TAG_HEX = 16
"""Hex digits of the tag (64 bits)."""

KEY_FILE = Path("secrets") / "feedback.key"


def feedback_key(settings: Settings) -> bytes:
    """The key request ids are signed with: the setting, else the home's key file (made once)."""
    if settings.feedback_key is not None:
        return settings.feedback_key.get_secret_value().encode()
    path = settings.home / KEY_FILE
    if not path.exists():
        _create(path)
    key = path.read_text().strip()
    if not key:
        raise ValueError(
            f"{path} is empty: delete it (a new key is made) or set MLOPS_FEEDBACK_KEY"
        )
    return key.encode()


def _create(path: Path) -> None:
    """Write a new random key to ``path`` unless another process wins the race (then keep its)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    try:
        os.link(draft, path)  # atomic, and refused when the file exists: one key wins
    except FileExistsError:
        pass
    finally:
        draft.unlink()


def tag(key: bytes, body: str) -> str:
    """The tag of ``body`` under ``key``."""
    return hmac.digest(key, body.encode(), hashlib.sha256).hex()[:TAG_HEX]


def signed(key: bytes, body: str) -> str:
    """``body`` followed by its tag."""
    return body + tag(key, body)


def verified(key: bytes, request_id: str) -> bool:
    """Whether ``request_id`` is a body followed by its right tag (checked in constant time)."""
    body, given = request_id[:-TAG_HEX], request_id[-TAG_HEX:]
    if len(request_id) <= TAG_HEX or not request_id.isascii():
        return False
    return hmac.compare_digest(given, tag(key, body))
