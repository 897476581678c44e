"""ASGI plumbing of the service: request metrics, back-pressure (a limit on requests in flight) and the guard that
limits bodies and times requests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from personalign.errors import ConfigError
from personalign.serve.errors import BodyTimeout, BodyTooLarge, error_response

BODY_TIMEOUT_S = 10.0  # the whole request body must arrive within this (a stalled upload is cut off with 408)
MAX_INFLIGHT = (
    64  # requests one worker serves at once by default; more are answered 503 at once (back-pressure)
)
RETRY_AFTER_S = 1  # what a shed request is told to wait (Retry-After)


class Metrics:
    """Request counts by route and status, latency percentiles over the last requests of each route."""

    def __init__(self, window: int = 20_000) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, dict[int, int]] = {}
        self.lat: dict[str, deque] = {}
        self.window = window
        self.started = time.time()
        self.load: InflightLimit | None = (
            None  # the app's back-pressure layer, once built (it registers here)
        )

    def record(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.counts.setdefault(route, {}).setdefault(status, 0)
            self.counts[route][status] += 1
            self.lat.setdefault(route, deque(maxlen=self.window)).append(seconds)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out = {}
            for route, c in self.counts.items():
                lat = np.asarray(self.lat.get(route, ()), dtype=float) * 1000.0
                out[route] = {
                    "count": int(sum(c.values())),
                    "by_status": {str(k): v for k, v in sorted(c.items())},
                    "latency_ms": {
                        "p50": float(np.percentile(lat, 50)) if len(lat) else None,
                        "p90": float(np.percentile(lat, 90)) if len(lat) else None,
                        "p99": float(np.percentile(lat, 99)) if len(lat) else None,
                        "max": float(lat.max()) if len(lat) else None,
                        "window": int(len(lat)),
                    },
                }
            return out


class RequestGuard:
    """Outermost ASGI layer: rejects bodies over the limit (413, by Content-Length or while streaming), cuts off
    a body that has not fully arrived ``body_timeout`` seconds after the request started (408, and the
    connection is closed: uvicorn's keep-alive timeout covers only idle connections, not a stalled body), and
    times every request for the metrics (route template, not raw path, so person ids do not become labels)."""

    def __init__(
        self, app: Callable, metrics: Metrics, max_body: int, body_timeout: float = BODY_TIMEOUT_S
    ) -> None:
        self.app, self.metrics, self.max_body = app, metrics, max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = False
                if too_big:
                    resp = error_response(413, f"request body exceeds {self.max_body} bytes")
                    await resp(scope, receive, send)
                    self.metrics.record("(rejected)", 413, time.perf_counter() - t0)
                    return
        seen, body_done = 0, False
        deadline = t0 + self.body_timeout

        async def limited_receive() -> dict:
            nonlocal seen, body_done
            if body_done:  # after the body only a disconnect can come: wait for it as long as it takes
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), max(deadline - time.perf_counter(), 0.0))
            except TimeoutError:
                raise BodyTimeout(self.body_timeout) from None
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self.max_body)
                body_done = not msg.get("more_body", False)
            return msg

        async def timed_send(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, limited_receive, timed_send)
        finally:
            route = scope.get("route")
            name = f"{scope['method']} {route.path}" if route is not None else "(unrouted)"
            self.metrics.record(name, status["code"], time.perf_counter() - t0)


class InflightLimit:
    """Outermost ASGI layer, back-pressure: a worker serves at most ``limit`` requests at once (counted from the
    request's arrival to its last response byte, the body's upload included); one more is answered at once with
    503, a ``Retry-After`` header and the API's JSON error body, instead of waiting in a queue that only grows.
    Paths in ``exempt`` (liveness) are always served. One event loop per worker: the counter needs no lock."""

    def __init__(
        self,
        app: Callable,
        limit: int,
        metrics: Metrics,
        exempt: tuple[str, ...] = ("/v1/health",),
        retry_after: int = RETRY_AFTER_S,
    ) -> None:
        if limit < 1:
            raise ConfigError(f"the in-flight limit must be at least 1, not {limit}")
        self.app, self.limit, self.metrics = app, int(limit), metrics
        self.exempt, self.retry_after = frozenset(exempt), int(retry_after)
        self.inflight = 0
        self.shed = 0
        metrics.load = self

    def stats(self) -> dict[str, int]:
        """The limit, requests in flight now and requests shed since start."""
        return {"limit": self.limit, "inflight": self.inflight, "shed": self.shed}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            t0 = time.perf_counter()
            self.shed += 1
            resp = error_response(
                503,
                f"the service is at its limit of {self.limit} requests in flight; retry in {self.retry_after} s",
                headers={"Retry-After": str(self.retry_after)},
            )
            await resp(scope, receive, send)
            self.metrics.record("(shed)", 503, time.perf_counter() - t0)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
