"""How a judged challenger ships, and when a rollout stands down: the pure choices."""

from __future__ import annotations

import pytest

from mlops_core.delivery import Delivery, choose_delivery, registry_moved


@pytest.mark.parametrize(
    ("gates_passed", "serve_url", "has_champion", "expected"),
    [
        (False, "http://127.0.0.1:8000", True, Delivery.refuse),
        (False, None, False, Delivery.refuse),
        (True, "http://127.0.0.1:8000", True, Delivery.rollout),
        (True, None, True, Delivery.promote),  # no server to watch the traffic on
        (True, "", True, Delivery.promote),
        (True, "http://127.0.0.1:8000", False, Delivery.promote),  # a first model: no champion
    ],
)
def test_delivery_follows_the_gates_the_server_and_the_champion(
    gates_passed: bool, serve_url: str | None, has_champion: bool, expected: Delivery
) -> None:
    chosen = choose_delivery(
        gates_passed=gates_passed, serve_url=serve_url, has_champion=has_champion
    )
    assert chosen is expected


def test_a_failed_gate_never_ships_whatever_else_holds() -> None:
    for serve_url in (None, "", "http://127.0.0.1:8000"):
        for has_champion in (False, True):
            chosen = choose_delivery(
                gates_passed=False, serve_url=serve_url, has_champion=has_champion
            )
            assert chosen is Delivery.refuse


def test_registry_moved_before_and_after_the_challenger_is_placed() -> None:
    start = {"champion": "1"}
    assert not registry_moved(start, champion="1", version="2", placed=False)
    # Before the first step the challenger alias may be anything: only the champion counts.
    assert not registry_moved(
        {"champion": "1", "challenger": "9"}, champion="1", version="2", placed=False
    )
    assert registry_moved({"champion": "3"}, champion="1", version="2", placed=False)
    placed = {"champion": "1", "challenger": "2"}
    assert not registry_moved(placed, champion="1", version="2", placed=True)
    # A person dropped or replaced the challenger, or rolled the champion back.
    assert registry_moved({"champion": "1"}, champion="1", version="2", placed=True)
    assert registry_moved(
        {"champion": "1", "challenger": "4"}, champion="1", version="2", placed=True
    )
    assert registry_moved(
        {"champion": "0", "challenger": "2", "previous": "1"},
        champion="1",
        version="2",
        placed=True,
    )
