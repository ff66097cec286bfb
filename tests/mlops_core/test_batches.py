"""A batch's life as values: where a failed batch goes, and the reasons a person reads."""

from mlops_core.batches import (
    CLAIMABLE,
    FINAL_STATES,
    BatchState,
    after_failure,
    dead_letter_reason,
    failure_reason,
    last_error,
    retried_reason,
)


def test_a_batch_is_dead_lettered_on_its_last_allowed_attempt_only() -> None:
    assert [after_failure(n, 3) for n in (1, 2, 3, 4)] == [
        BatchState.failed,
        BatchState.failed,
        BatchState.dead_letter,
        BatchState.dead_letter,
    ]
    assert after_failure(1, 1) is BatchState.dead_letter
    # Neither claimed by a sweep nor done: its file stays in landing/ until a person decides.
    assert BatchState.dead_letter not in CLAIMABLE and BatchState.dead_letter not in FINAL_STATES
    assert BatchState.dead_letter.value == "dead_letter"  # the exporter's and alert's label


def test_the_dead_letter_reason_keeps_the_last_error_and_names_the_way_out() -> None:
    sha = "ab" * 32
    error = failure_reason(ConnectionError("MLflow at 127.0.0.1:5000 refused"))
    reason = dead_letter_reason(error, 3, "credit", sha)
    assert "gave up after 3 attempts" in reason
    assert "MLflow at 127.0.0.1:5000 refused" in reason
    assert "`mlops reconcile` retries it" not in reason, "no longer true once dead-lettered"
    assert f"mlops retry {sha[:12]} --dataset credit" in reason
    assert f"mlops drop {sha[:12]} --dataset credit --reason" in reason
    assert last_error(reason) == error.removesuffix(
        "; the file stays in the landing zone and `mlops reconcile` retries it"
    )
    assert last_error("plain words") == "plain words" and last_error(None) is None
    back = retried_reason(reason, 3)
    assert back.startswith("put back by a person after 3 failed attempts")
    assert "MLflow at 127.0.0.1:5000 refused" in back and "mlops retry" not in back
