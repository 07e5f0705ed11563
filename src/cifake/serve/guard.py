"""What every request passes first (a pure ASGI middleware, so it sees the body as it streams in):

- a request id, returned as the X-Request-ID header and written in one JSON access-log line per request;
- API keys: with keys set, /v1/* needs `Authorization: Bearer KEY` (compared in constant time);
- the request size limit, enforced on the bytes as they arrive: a chunked upload without Content-Length is
  stopped at the limit, not read to the end;
- request counts and latencies for /metrics.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cifake.serve.metrics import ServiceMetrics

access_log = logging.getLogger("cifake.serve.access")


class Guard:
    def __init__(self, app: ASGIApp, api_keys: tuple[str, ...], max_request_bytes: int, metrics: ServiceMetrics):
        self.app, self.max_request_bytes, self.metrics = app, max_request_bytes, metrics
        self.keys = [key.encode() for key in api_keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id, started, status = uuid.uuid4().hex[:16], time.perf_counter(), [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal:
                await _json(send_with_id, *refusal)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe(scope["path"], scope["method"], status[0], seconds)
            access_log.info(json.dumps({
                "request_id": request_id, "method": scope["method"], "path": scope["path"], "status": status[0],
                "ms": round(seconds * 1000, 1), "client": (scope.get("client") or ("-",))[0]}))

    def _refusal(self, scope: Scope) -> tuple[int, str, dict] | None:
        """(status, message, headers) when the request is refused before it is read, else None."""
        headers = Headers(scope=scope)
        if self.keys and scope["path"].startswith("/v1/") and not self._authorised(headers):
            return 401, "missing or wrong API key: send 'Authorization: Bearer KEY'", {"www-authenticate": "Bearer"}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_request_bytes:
            return 413, f"request of {int(length):,} bytes is over the limit of {self.max_request_bytes:,} bytes", {
                "connection": "close"}
        return None

    def _authorised(self, headers: Headers) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # every key is compared, each in constant time, so the time taken tells nothing about any key
        matches = [hmac.compare_digest(given.strip().encode(), key) for key in self.keys]
        return any(matches)

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_request_bytes:
                    # Connection: close makes the server drop the rest of the upload instead of draining it
                    raise HTTPException(413, f"request body over the limit of {self.max_request_bytes:,} bytes",
                                        headers={"connection": "close"})
            return message

        return receive_within_limit


async def _json(send: Send, status: int, message: str, headers: dict) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
