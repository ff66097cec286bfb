"""The request-body limit, enforced while the body streams in (``MLOPS_SERVE_MAX_BODY_BYTES``)."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """A body over the limit, found while it streams in; FastAPI passes it on as a 413."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        given = f"{size:,} bytes" if size is not None else "more bytes than allowed"
        super().__init__(413, detail=f"request body of {given}; at most {limit:,}")


class BodyLimit:
    """ASGI middleware: a 413 for a request body over ``limit`` bytes, declared or not.

    A declared ``Content-Length`` over the limit is refused before anything is read; a body sent
    without one (chunked) is counted as it arrives, so leaving the header out lifts no limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's answer, or a 413 once the body is known to be over the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(BodyTooLarge(self.limit, int(declared)), scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:  # raised where FastAPI's own handlers do not see it
            if started:
                raise
            await self._refuse(exc, scope, receive, send)

    @staticmethod
    async def _refuse(exc: BodyTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})
        await response(scope, receive, send)
