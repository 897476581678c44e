"""Back-pressure: beyond ``--max-inflight`` requests in flight a worker answers 503 with Retry-After and the JSON
error body at once (nothing queues without bound); /v1/health is always served; freed slots serve again."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from personalign.errors import ConfigError
from personalign.serve.launch import ServerProcess
from personalign.serve.middleware import MAX_INFLIGHT, InflightLimit, Metrics


# ------------------------------------------------------------------------------------------- the ASGI layer
def _held_app(release: asyncio.Event, entered: list[int]) -> Starlette:
    async def slow(_req):
        entered.append(1)
        await release.wait()
        return JSONResponse({"ok": True})

    async def health(_req):
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/slow", slow), Route("/v1/health", health)])


def test_over_the_limit_is_shed_at_once_and_slots_come_back() -> None:
    async def scenario() -> None:
        release, entered = asyncio.Event(), []
        metrics = Metrics()
        guard = InflightLimit(_held_app(release, entered), limit=3, metrics=metrics)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(guard), base_url="http://t") as c:
            held = [asyncio.create_task(c.get("/slow")) for _ in range(3)]
            while len(entered) < 3:
                await asyncio.sleep(0.001)
            assert guard.inflight == 3
            t0 = time.perf_counter()
            shed = await asyncio.gather(*(c.get("/slow") for _ in range(4)))
            assert time.perf_counter() - t0 < 1.0  # answered at once, not queued behind the held ones
            for r in shed:
                assert r.status_code == 503
                assert r.headers["retry-after"] == "1"
                body = r.json()["error"]
                assert (
                    body["status"] == 503 and body["code"] == "unavailable" and "in flight" in body["message"]
                )
            assert (await c.get("/v1/health")).status_code == 200  # exempt while saturated
            assert len(entered) == 3  # none of the shed requests reached the app
            release.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [200] * 3
            assert guard.inflight == 0
            assert (await c.get("/slow")).status_code == 200
        assert guard.stats() == {"limit": 3, "inflight": 0, "shed": 4}
        assert metrics.snapshot()["(shed)"]["by_status"] == {"503": 4}
        assert metrics.load is guard

    asyncio.run(scenario())


def test_a_failing_request_frees_its_slot() -> None:
    async def boom(_scope, _receive, _send):
        raise RuntimeError("boom")

    async def scenario() -> None:
        guard = InflightLimit(boom, limit=1, metrics=Metrics())
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await guard({"type": "http", "path": "/x"}, None, None)
        assert guard.inflight == 0 and guard.shed == 0

    asyncio.run(scenario())


def test_limit_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        InflightLimit(lambda *a: None, limit=0, metrics=Metrics())


def test_cli_default_is_the_services() -> None:
    from personalign.cli import serve as cli_serve
    from personalign.serve.service import ServeConfig

    assert cli_serve.MAX_INFLIGHT == MAX_INFLIGHT == ServeConfig(model_dir="m").max_inflight


# ------------------------------------------------------------------------------------------- a real server
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from personalign.experiments.models import train_small_model

    base = tmp_path_factory.mktemp("bp")
    return train_small_model(base / "m", rank=2, seed=0, persons=10, comparisons_per_person=8)


def _start_stalled(addr: tuple[str, int], admin: str, body: bytes) -> socket.socket:
    """A score request whose body is sent only in part: it stays in flight until the rest comes."""
    s = socket.create_connection(addr, timeout=20)
    head = (
        f"POST /v1/persons/bp/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    s.sendall(head + body[:5])
    return s


def _finish(s: socket.socket, body: bytes) -> bytes:
    s.sendall(body[5:])
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    s.close()
    return reply


def test_real_server_sheds_beyond_max_inflight(model_dir: Path, tmp_path: Path) -> None:
    admin = "adm-" + secrets.token_hex(8)
    body = json.dumps({"prompt": "p", "candidates": ["a", "b"]}).encode()
    args = ["--max-inflight", "2", "--body-timeout", "60"]
    with ServerProcess(model_dir, f"sqlite:///{tmp_path / 's.db'}", admin, extra_args=args) as srv:
        h = {"Authorization": f"Bearer {admin}"}
        addr = (srv.host, srv.port)
        stalled = [_start_stalled(addr, admin, body) for _ in range(2)]
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            deadline = time.monotonic() + 10  # until the server has taken both stalled requests in
            while (r := c.get("/v1/persons", headers=h)).status_code != 503 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert r.status_code == 503, r.text
            t0 = time.perf_counter()
            r = c.post("/v1/persons/bp/score", headers=h, json={"prompt": "p", "candidates": ["a"]})
            assert time.perf_counter() - t0 < 2.0
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.headers["content-type"].startswith("application/json")
            assert r.json()["error"]["code"] == "unavailable"
            assert c.get("/v1/health").status_code == 200  # liveness is never shed
            replies = [_finish(s, body) for s in stalled]  # the held requests are served in full
            assert all(rep.startswith(b"HTTP/1.1 200") for rep in replies), replies
            ok = c.post("/v1/persons/bp/score", headers=h, json={"prompt": "p", "candidates": ["a", "b"]})
            assert ok.status_code == 200 and len(ok.json()["rewards"]) == 2
            m = c.get("/v1/metrics", headers=h).json()
            assert m["inflight"]["limit"] == 2 and m["inflight"]["shed"] >= 2
            assert m["requests"]["(shed)"]["by_status"]["503"] == m["inflight"]["shed"]
