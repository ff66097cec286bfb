"""The HTTP floor: a bare FastAPI app that parses a credit record with pydantic, returns a constant.

``benchmarks/serving.py`` serves it under uvicorn exactly as ``mlops serve`` runs (one worker,
log level warning) to measure what any Python model server on this machine pays before it does
any work of its own.

    uvicorn --app-dir benchmarks floor_app:app --port 8000 --log-level warning
    python benchmarks/floor_app.py 8000 2   # 2 processes on one port, as `mlops serve --workers`

The second form binds each process' socket as ``mlops serve --workers`` does
(``mlops_core.serving.workers.public_socket``: SO_REUSEPORT, a TCP socket so asyncio turns
Nagle's algorithm off). uvicorn's own ``--workers`` binds a socket without naming the protocol,
so its connections keep Nagle's algorithm and each response waits for a delayed ACK.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, create_model

from mlops_cli.scenarios import CREDIT_SPEC

Record = create_model(  # type: ignore[call-overload]
    "Record",
    **{
        name: ((float | None) if name in CREDIT_SPEC.numeric else (str | int | None), None)
        for name in CREDIT_SPEC.features
    },
)


class Request(BaseModel):
    """The request body ``mlops serve`` takes for one record."""

    record: Record  # type: ignore[valid-type]
    routing_key: str | None = None


app = FastAPI(title="floor")


@app.post("/predict")
def predict(body: Request) -> dict[str, Any]:
    """A constant answer of the same shape as ``mlops serve``'s."""
    return {
        "request_id": "floor",
        "model_version": "0",
        "variant": "champion",
        "predictions": [0],
        "probabilities": [0.5],
    }


@app.get("/ready")
def ready() -> dict[str, str]:
    """Up."""
    return {"status": "ready"}


def serve(port: int, processes: int) -> None:
    """The floor as ``processes`` processes sharing ``port``, until terminated."""
    import multiprocessing
    import signal

    import uvicorn

    from mlops_core.serving.workers import public_socket

    def one() -> None:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(
            sockets=[public_socket("127.0.0.1", port)]
        )

    children = [multiprocessing.Process(target=one) for _ in range(processes)]
    for child in children:
        child.start()
    signal.signal(signal.SIGTERM, lambda *_: [c.terminate() for c in children])
    for child in children:
        child.join()


if __name__ == "__main__":
    import sys

    serve(int(sys.argv[1]), int(sys.argv[2]))
