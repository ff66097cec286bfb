"""The ``mlops`` command line: the Typer app, with the commands of ``mlops_cli.commands``.

Heavy libraries (Prefect, GX, alibi-detect, MLflow) load inside the commands, so it starts fast.
"""

from __future__ import annotations

import typer

from mlops_cli.commands import batches, datasets, inspection, logs, models, report, running
from mlops_cli.options import show_flags_as_flags

show_flags_as_flags()  # `--json`, not `--json <bool>`, in every help page

app = typer.Typer(
    name="mlops",
    help="Event-driven MLOps: validate batches, detect drift, retrain, and roll out models.",
    epilog=(
        "Start with:\n\n  $ mlops demo\n\nthen `mlops <command> --help` for each command's "
        "examples. `mlops up` runs the stack in the foreground (Ctrl-C stops it); "
        "`mlops up --cluster` runs it in the background, and `mlops down` stops it."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Shown under each command's options (`mlops <command> --help`): what a person types first.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "add": (
        "mlops dataset add datasets/credit.yaml --reference credit-reference.parquet",
        "mlops dataset add my-spec.yaml --reference reference.csv --json",
    ),
    "list": ("mlops dataset list",),
    "submit": (
        "mlops submit batch-19-week19.csv --dataset credit",
        "mlops submit week20.parquet -d credit --json",
    ),
    "labels": ("mlops labels labels-week19.csv --dataset credit",),
    "reconcile": ("mlops reconcile", "mlops reconcile --dataset credit --json"),
    "gc": (
        "mlops gc --dry-run",
        "mlops gc --dataset credit --older-than-days 30 --json",
    ),
    "retry": ("mlops retry 3f2a9c1b7d4e --dataset credit", "mlops retry 3f2a9c1b7d4e --json"),
    "drop": (
        "mlops drop 3f2a9c1b7d4e --dataset credit --reason 'export bug upstream, resent as week20'",
    ),
    "up": (
        "mlops up",
        "mlops up --mlflow-ui",
        "mlops up --cluster --serve credit  (then: mlops down)",
    ),
    "down": ("mlops down  (stops what `mlops up --cluster` started)",),
    "validate": (
        "mlops validate batch.csv --dataset credit",
        "mlops validate batch.csv --spec credit.yaml --reference reference.parquet --no-docs",
    ),
    "process": ("mlops process batch-19-week19.csv --dataset credit",),
    "train": (
        "mlops train --dataset credit",
        "mlops train -d credit --json",
        "mlops train -d credit --gate-only --json > gates.json",
    ),
    "promote": ("mlops promote --dataset credit", "mlops promote -d credit --version 7"),
    "rollback": ("mlops rollback --dataset credit",),
    "status": ("mlops status", "mlops status --dataset credit --limit 10", "mlops status --json"),
    "report": (
        "mlops report --dataset credit",
        "mlops report --dataset credit --html timeline.html",
    ),
    "drift": (
        "mlops drift reference.parquet week19.csv --dataset credit",
        "mlops drift ref.csv new.csv --spec credit.yaml --plot plots/ --fail-on-drift",
    ),
    "serve": (
        "mlops serve  (then open http://127.0.0.1:8000/docs)",
        "mlops serve --dataset credit --host 0.0.0.0 --port 8080 --workers 4",
    ),
    "demo": ("mlops demo", "mlops demo --keep-running  (explore the Prefect and MLflow UIs after)"),
    "resubmit": ("mlops logs resubmit --dry-run", "mlops logs resubmit --json"),
}


def examples(name: str) -> str | None:
    """The examples of command ``name`` as a help epilog (one paragraph per line)."""
    lines = EXAMPLES.get(name)
    if not lines:
        return None
    return "Examples:\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


dataset_app = typer.Typer(help="Register and list datasets.", no_args_is_help=True)
dataset_app.command("add", epilog=examples("add"))(datasets.add)
dataset_app.command("list", epilog=examples("list"))(datasets.list_names)
app.add_typer(dataset_app, name="dataset")

logs_app = typer.Typer(
    help="The model server's prediction and feedback logs.", no_args_is_help=True
)
logs_app.command("resubmit", epilog=examples("resubmit"))(logs.resubmit)
app.add_typer(logs_app, name="logs")

# `mlops --help` lists the commands in this order: the loop's, roughly as a user meets them.
for command in (
    batches.submit,
    batches.labels,
    batches.reconcile,
    batches.retry,
    batches.drop,
    batches.gc,
    running.up,
    running.down,
    batches.validate,
    batches.process,
    models.train,
    models.promote,
    models.rollback,
    inspection.status,
    report.report,
    inspection.drift,
    models.serve,
    running.demo,
):
    app.command(epilog=examples(command.__name__))(command)


if __name__ == "__main__":  # pragma: no cover
    app()
