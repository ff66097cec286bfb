"""The parts of ``mlops serve --workers`` that need no process: ids, metrics merging, the port."""

from __future__ import annotations

import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops_cli.stack import free_port
from mlops_core.serving.metrics import ServerMetrics
from mlops_core.serving.workers import (
    RequestIds,
    Supervisor,
    Workers,
    merge_expositions,
    with_worker_label,
)
from mlops_core.settings import Settings


def test_request_ids_are_unique_and_name_their_worker() -> None:
    workers = Workers(1, ("http://127.0.0.1:1", "http://127.0.0.1:2"))
    first, second = RequestIds(0), RequestIds(1)
    ids = [first() for _ in range(1000)] + [second() for _ in range(1000)]
    assert len(set(ids)) == 2000
    assert all(len(i) == 48 and int(i, 16) >= 0 for i in ids)
    assert {workers.owner(i) for i in ids[:1000]} == {0}
    assert {workers.owner(i) for i in ids[1000:]} == {1}
    # An id from elsewhere (a client's own, an older server's uuid) names no worker here.
    assert workers.owner("not-an-id") is None
    assert workers.owner("0" * 30 + "07" + "0" * 16) is None
    assert workers.others() == [(0, "http://127.0.0.1:1")]


def test_merged_metrics_are_one_valid_exposition_with_every_workers_samples() -> None:
    texts = []
    for worker, requests in ((0, 3), (1, 5)):
        metrics = ServerMetrics()
        for _ in range(requests):
            metrics.request("champion", "1", 0.01)
        texts.append(with_worker_label(metrics.render().decode(), worker))
    merged = merge_expositions(texts)
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    totals = {
        s.labels["worker"]: s.value
        for s in families["mlops_requests"].samples
        if s.name == "mlops_requests_total"
    }
    assert totals == {"0": 3.0, "1": 5.0}
    assert merged.count("# TYPE mlops_requests_total counter") == 1
    buckets = [s for s in families["mlops_request_latency_seconds"].samples if "le" in s.labels]
    assert {s.labels["worker"] for s in buckets} == {"0", "1"}


def test_a_port_another_server_answers_on_is_refused() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        supervisor = Supervisor(2, "127.0.0.1", port, "credit", log=lambda _: None)
        with pytest.raises(OSError, match="already listens"):
            supervisor.run()
        assert supervisor.processes == [None, None], "no worker was started"


def test_a_worker_that_cannot_start_stops_the_server_instead_of_restarting_forever(
    settings: Settings,
) -> None:
    lines: list[str] = []
    supervisor = Supervisor(
        1, "127.0.0.1", free_port(), "no-such-dataset", log=lines.append, max_quick_exits=2
    )
    assert supervisor.run() == 1
    assert "starting it again in 1 s" in lines[0]
    assert "2 times in a row" in lines[-1] and "--workers 1" in lines[-1]
    assert all(p is None or p.poll() is not None for p in supervisor.processes)
