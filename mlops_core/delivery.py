"""How a judged challenger reaches users, and when a rollout must stand down: pure choices."""

from __future__ import annotations

from enum import StrEnum

from mlops_core.tags import CHALLENGER, CHAMPION


class Delivery(StrEnum):
    """What the gated subflow does with a challenger once the gates have spoken."""

    rollout = "rollout"  # progressive delivery through the model server
    promote = "promote"  # straight to champion
    refuse = "refuse"  # a gate failed: the champion stays


def choose_delivery(*, gates_passed: bool, serve_url: str | None, has_champion: bool) -> Delivery:
    """Roll out through the server when one is named and there is a champion to share traffic with.

    A first model has no champion to split traffic with, and without ``MLOPS_SERVE_URL`` there is
    no server to watch, so both are promoted directly; a challenger that failed a gate never ships.
    """
    if not gates_passed:
        return Delivery.refuse
    if serve_url and has_champion:
        return Delivery.rollout
    return Delivery.promote


def registry_moved(
    now: dict[str, str], *, champion: str | None, version: str, placed: bool
) -> bool:
    """Whether a person moved the aliases since the rollout of ``version`` began.

    The champion must still be the one the rollout started from, and once the rollout placed its
    challenger, the challenger alias must still be ``version``.
    """
    return now.get(CHAMPION) != champion or (placed and now.get(CHALLENGER) != version)
