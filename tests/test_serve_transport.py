"""Transport-level hardening against a real uvicorn on loopback: a stalled request body is cut off with 408 and the
connection closed within the configured timeout; a 405 names every method of the path in ``Allow``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from personalign.experiments.models import train_small_model
from personalign.serve.app import ServeConfig, create_app
from personalign.serve.launch import free_port

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base = tmp_path_factory.mktemp("transport")
    model = train_small_model(base / "m", rank=2, seed=0, persons=10, comparisons_per_person=8)
    cfg = ServeConfig(
        model_dir=str(model), db_url=str(base / "s.db"), admin_keys=["adm"], body_timeout_s=TIMEOUT
    )
    return create_app(cfg)


@pytest.fixture(scope="module")
def server(app) -> Iterator[tuple[str, int]]:
    """uvicorn serving the app in a thread of this process (its event loop), on a free loopback port."""
    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    t_end = time.monotonic() + 20
    while not srv.started and time.monotonic() < t_end:
        time.sleep(0.02)
    assert srv.started, "uvicorn did not start"
    yield "127.0.0.1", port
    srv.should_exit = True
    th.join(10)


def _raw(addr: tuple[str, int], head: bytes, body: bytes, wait: float = 5.0) -> tuple[bytes, float, bool]:
    """Send ``head`` and ``body`` and read until the server closes; returns (reply, seconds, closed)."""
    with socket.create_connection(addr, timeout=wait) as s:
        t0 = time.monotonic()
        s.sendall(head + body)
        reply, closed = b"", False
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                reply += chunk
        except TimeoutError:
            pass
        return reply, time.monotonic() - t0, closed


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer adm\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_a_stalled_body_gets_408_and_the_connection_closes(server):
    body = b'{"prompt": "p"'  # 14 bytes of the announced 1000
    assert len(body) == 14
    reply, seconds, closed = _raw(server, _head("/v1/persons/slow/score", 1000), body)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"request_timeout" in reply and b"connection: close" in reply.lower()
    assert closed, "the server kept the half-sent connection open"
    assert TIMEOUT * 0.8 <= seconds < TIMEOUT + 3, seconds


def test_a_complete_body_on_the_same_server_is_served(server):
    body = b'{"prompt": "p", "candidates": ["a", "b"]}'
    reply, seconds, _ = _raw(server, _head("/v1/persons/fast/score", len(body)), body, wait=2.0)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]


def test_a_slow_but_steady_body_is_still_cut_off(server):
    """The timeout is on the whole body, not per read: a byte every 0.3 s does not keep the request alive."""
    with socket.create_connection(server, timeout=6) as s:
        t0 = time.monotonic()
        s.sendall(_head("/v1/persons/drip/score", 100))
        reply = b""
        for _ in range(15):
            try:
                s.sendall(b" ")
            except OSError:
                break  # the server closed the connection
            time.sleep(0.3)
            s.setblocking(False)
            try:
                reply += s.recv(65536)
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
            if reply:
                break
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert time.monotonic() - t0 < TIMEOUT + 2


def test_405_allow_names_every_method_of_the_path(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.put("/v1/persons/someone", headers={"Authorization": "Bearer adm"})
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        allow = {m.strip() for m in r.headers["allow"].split(",")}
        assert {"GET", "DELETE"} <= allow and "PUT" not in allow
        openapi = c.get("/openapi.json").json()["paths"]
        for path, ops in openapi.items():
            concrete = path.replace("{person_id}", "someone").replace("{key_id}", "k1")
            r = c.request("PATCH", concrete)
            assert r.status_code == 405, path
            allow = {m.strip() for m in r.headers["allow"].split(",")}
            assert {op.upper() for op in ops} <= allow, (path, allow)
