"""The ``mlops`` command line: the Typer app, with the commands of ``mlops_cli.commands``.

Heavy libraries (Prefect, GX, alibi-detect, MLflow) load inside the commands, so it starts fast.
"""

from __future__ import annotations

import typer

from mlops_cli.commands import batches, datasets, inspection, models, running

app = typer.Typer(
    name="mlops",
    help="Event-driven MLOps: validate batches, detect drift, retrain, and roll out models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dataset_app = typer.Typer(help="Register and list datasets.", no_args_is_help=True)
dataset_app.command("add")(datasets.add)
dataset_app.command("list")(datasets.list_names)
app.add_typer(dataset_app, name="dataset")

# `mlops --help` lists the commands in this order: the loop's, roughly as a user meets them.
for command in (
    batches.submit,
    batches.labels,
    batches.reconcile,
    running.up,
    running.down,
    batches.validate,
    batches.process,
    models.train,
    models.promote,
    models.rollback,
    inspection.status,
    inspection.drift,
    models.serve,
    running.demo,
):
    app.command()(command)


if __name__ == "__main__":  # pragma: no cover
    app()
