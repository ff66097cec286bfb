"""The server's error answers: a 422 listing what was wrong, and never a 500 while saying so."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def problem(status: int, errors: list[dict[str, Any]]) -> HTTPException:
    """An HTTP error whose ``detail`` lists ``errors`` (each a ``loc`` and a ``msg``)."""
    return HTTPException(status_code=status, detail=errors)


def printable(value: Any) -> Any:
    """``value`` made JSON-ready, every string encodable as UTF-8 (lone surrogates escaped)."""
    value = jsonable_encoder(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [printable(v) for v in value]
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    return value


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """The 422 for a request FastAPI could not parse, its echoed input made printable."""
    # FastAPI's own handler echoes the input; a lone surrogate in it ("\ud800", valid JSON)
    # cannot be encoded as UTF-8 and turned the 422 into a 500.
    return JSONResponse(status_code=422, content={"detail": printable(exc.errors())})
