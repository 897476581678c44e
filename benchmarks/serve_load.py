"""Load benchmark of the personalization service against the framework's own ceiling, at 1 and at N workers.

One run, one machine, loopback. For each worker count (default 1 and 2) it starts, with the same uvicorn settings
(host, ``--workers``, log level, uvicorn's defaults otherwise):

- a bare FastAPI app (``make_bare_app``): one ``POST`` route that validates a body of the score request's shape
  (a prompt and 16 candidate texts) and answers a small JSON, nothing else: the framework's ceiling;
- ``personalign serve`` on SQLite (WAL, synchronous=FULL, group commit) with a trained LowRankBT (hashing
  features, rank 8), persons with keys and some history, every candidate text's features warmed.

and drives each in open loop: requests sent on a fixed schedule at increasing rates (latency counted from each
request's scheduled time, so a stalled server cannot hide a queue), one step per rate, until the service sheds
load (503 from ``--max-inflight``) or stops keeping up. All servers are up at once and take turns at each rate
(an idle server costs nothing), so a burst of another job on a shared machine falls on them alike. Per step: offered and achieved rate, accepted (200), shed
(503), failed, p50/p99 of the accepted. Phases: bare, score (16 candidates), feedback (a comparison, committed
before the reply), and feedback at a fixed 100 req/s from 12 connections, with group commit and, for comparison,
without (``--no-group-commit``, one worker).

The capacity of a phase is the highest rate it sustained: at least 95 % of the offered rate achieved, under 1 %
shed or failed, p99 within ``--p99-bound-ms``. Reported: score capacity at N workers over 1 worker, and score
capacity as a share of the bare ceiling at the same worker count.

The load generator is a small asyncio HTTP/1.1 client over keep-alive connections (prebuilt request bytes, no
per-request client objects), so it costs the server little CPU: its own CPU time per request is reported.
Client and servers share the machine; on a machine other jobs load, say so beside the figures.

    nice .venv/bin/python benchmarks/serve_load.py                 # ~6-8 min on 2 cores
    nice .venv/bin/python benchmarks/serve_load.py --workers 1 --step-seconds 2
Prints a table and writes benchmarks/results/serve_load.{json,txt}.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
console = Console(record=True, width=150)

RATES = [100, 200, 400, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000, 6000]  # bare and score
FEEDBACK_RATES = [50, 100, 200, 300, 400, 600, 800, 1000, 1500, 2000]


# ------------------------------------------------------------------------------------------------ the bare app
class BareBody(BaseModel):
    """The score request's shape (no limits, no strictness: the framework's cheapest validation)."""

    prompt: str = ""
    candidates: list[str]


def make_bare_app():  # noqa: ANN201 - uvicorn factory
    """The framework's ceiling: one sync route (as the service's score route is) that validates a body of the
    score request's shape and answers a small JSON; ``GET /health`` names the worker."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/bare/{person_id}")
    def bare(person_id: str, body: BareBody) -> dict[str, Any]:
        return {"person_id": person_id, "n": len(body.candidates)}

    @app.get("/health")
    def health() -> dict[str, int]:
        return {"worker_pid": os.getpid()}

    return app


class BareServer:
    """``uvicorn benchmarks.serve_load:make_bare_app`` with the service's uvicorn settings, in a subprocess."""

    def __init__(self, workers: int, host: str = "127.0.0.1") -> None:
        from personalign.serve.launch import free_port

        self.host, self.port, self.workers = host, free_port(host), workers
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BareServer:
        cmd = [
            sys.executable, "-m", "uvicorn", "serve_load:make_bare_app", "--factory",
            "--app-dir", str(Path(__file__).resolve().parent), "--host", self.host, "--port", str(self.port),
            "--workers", str(self.workers), "--log-level", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the bare app did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_workers(url: str, path: str, n: int, seconds: float = 300.0) -> int:
    """Poll ``path`` (new connection each time) until ``n`` distinct worker pids answered; returns how many did."""
    pids: set[int] = set()
    deadline = time.monotonic() + seconds
    while len(pids) < n and time.monotonic() < deadline:
        try:
            pids.add(httpx.get(url + path, timeout=5).json()["worker_pid"])
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return len(pids)


# ------------------------------------------------------------------------------------------------ the client
class RawClient:
    """HTTP/1.1 over a pool of keep-alive asyncio connections (opened on demand, up to ``max_conns``; a request
    waits for a free one beyond that). A request is prebuilt bytes; the reply is read by Content-Length."""

    def __init__(self, host: str, port: int, max_conns: int) -> None:
        self.host, self.port, self.max_conns = host, port, max_conns
        self._idle: collections.deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = collections.deque()
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._open = 0

    async def _acquire(self) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bool]:
        """A connection and whether it was used before (the oldest idle one first, so none idles long enough
        for the server's keep-alive timeout to close it)."""
        if self._idle:
            return self._idle.popleft(), True
        if self._open < self.max_conns:
            self._open += 1
            try:
                return await asyncio.open_connection(self.host, self.port), False
            except BaseException:
                self._open -= 1
                raise
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return await fut, True

    def _release(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(conn)
                return
        self._idle.append(conn)

    def _discard(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        conn[1].close()
        self._open -= 1
        while self._waiters:  # a waiter gets a new connection of its own
            w = self._waiters.popleft()
            if not w.done():
                asyncio.ensure_future(self._hand_new(w))
                return

    async def _hand_new(self, waiter: asyncio.Future) -> None:
        self._open += 1
        try:
            conn = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            self._open -= 1
            if not waiter.done():
                waiter.set_exception(exc)
            return
        if waiter.done():
            self._release(conn)
        else:
            waiter.set_result(conn)

    async def request(self, data: bytes) -> int:
        """Send one request; returns the status code (raises OSError/IncompleteReadError on a broken link). A
        reused connection the server had closed before answering anything is replaced once, as HTTP clients do."""
        for attempt in (0, 1):
            conn, reused = await self._acquire()
            reader, writer = conn
            try:
                writer.write(data)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                lower = head.lower()
                i = lower.find(b"content-length:")
                length = int(lower[i + 15 : lower.find(b"\r\n", i)]) if i >= 0 else 0
                if length:
                    await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self._discard(conn)
                stale = not getattr(exc, "partial", b"")
                if attempt == 0 and reused and stale:
                    continue
                raise
            except BaseException:
                self._discard(conn)
                raise
            if b"connection: close" in lower:
                self._discard(conn)
            else:
                self._release(conn)
            return status
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for _r, w in self._idle:
            w.close()
        self._idle.clear()


def build(method: str, path: str, body: Any | None = None, key: str | None = None) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    return (head + "\r\n").encode() + payload


def pct(lat: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(lat) * 1000.0, q)) if lat else None


async def open_loop_step(
    host: str, port: int, requests: list[bytes], rate: float, seconds: float, conns: int, timeout: float
) -> dict[str, Any]:
    """``rate * seconds`` requests on a fixed schedule (cycling through ``requests``), whatever the answers."""
    client = RawClient(host, port, conns)
    n = max(int(rate * seconds), 1)
    ok: list[float] = []
    counts = {"shed": 0, "other": 0, "failed": 0}
    cpu0 = time.process_time()
    t0 = time.perf_counter() + 0.02
    finished: list[float] = []

    async def one(i: int, sched: float) -> None:
        try:
            status = await asyncio.wait_for(client.request(requests[i % len(requests)]), timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            counts["failed"] += 1
            return
        done = time.perf_counter()
        finished.append(done)
        if status == 200:
            ok.append(done - sched)
        elif status == 503:
            counts["shed"] += 1
        else:
            counts["other"] += 1

    tasks = []
    i = 0
    while i < n:
        now = time.perf_counter()
        while i < n and t0 + i / rate <= now:  # everything due by now goes out (no drift, no skipped sends)
            tasks.append(asyncio.create_task(one(i, t0 + i / rate)))
            i += 1
        if i < n:
            await asyncio.sleep(max(t0 + i / rate - time.perf_counter(), 0.0))
    await asyncio.gather(*tasks)
    await client.close()
    # the step lasts until 99 % of its answers came (one straggler does not stretch it; a backlog does)
    wall = max(float(np.percentile(finished, 99)) - t0 if finished else 0.0, n / rate)
    return {
        "offered_rps": rate,
        "requests": n,
        "accepted": len(ok),
        **counts,
        "achieved_rps": len(ok) / wall,
        "p50_ms": pct(ok, 50),
        "p99_ms": pct(ok, 99),
        "max_ms": float(max(ok) * 1000) if ok else None,
        "client_cpu_us_per_request": (time.process_time() - cpu0) / n * 1e6,
    }


def sustained(step: dict[str, Any], bound_ms: float) -> bool:
    bad = step["shed"] + step["failed"] + step["other"]
    return (
        step["achieved_rps"] >= 0.95 * step["offered_rps"]
        and bad <= 0.01 * step["requests"]
        and step["p99_ms"] is not None
        and step["p99_ms"] <= bound_ms
    )


def ramp_result(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    good = [s["offered_rps"] for s in steps if s["sustained"]]
    first_shed = next((s for s in steps if s["shed"] > 0), None)
    return {
        "phase": name,
        "steps": steps,
        "capacity_rps": max(good) if good else 0.0,
        "peak_achieved_rps": max(s["achieved_rps"] for s in steps) if steps else 0.0,
        "shed_at_rps": first_shed["offered_rps"] if first_shed else None,
        "shed_step": first_shed,
    }


async def interleaved_ramps(
    targets: list[tuple[str, str, list[bytes]]], rates: list[float], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Open-loop steps at increasing rates for every target ``(name, url, requests)``, the targets taking turns
    at each rate (so a burst of another job on a shared machine hits them alike), each until it sheds load (over
    1 % answered 503) or stops keeping up (under 90 % of the offered rate achieved, or two steps in a row not
    sustained)."""
    steps: dict[str, list[dict[str, Any]]] = {name: [] for name, _u, _r in targets}
    active = {name for name, _u, _r in targets}
    for rate in rates:
        for name, url, requests in targets:
            if name not in active:
                continue
            host, port = url.removeprefix("http://").split(":")
            st = await open_loop_step(
                host, int(port), requests, rate, args.step_seconds, args.conns, args.timeout
            )
            st["sustained"] = sustained(st, args.p99_bound_ms)
            mine = steps[name]
            mine.append(st)
            console.print(
                f"  {name:<34} {rate:>6.0f}/s -> {st['achieved_rps']:7.1f}/s ok, 503 {st['shed']:>5}, failed "
                f"{st['failed'] + st['other']:>4}, p50 {fmt(st['p50_ms'])} p99 {fmt(st['p99_ms'])} ms",
                highlight=False,
            )
            shed_now = st["shed"] > 0.01 * st["requests"]
            behind = st["achieved_rps"] < 0.9 * rate
            twice = len(mine) >= 2 and not mine[-1]["sustained"] and not mine[-2]["sustained"]
            if shed_now or behind or twice:
                active.discard(name)
            await asyncio.sleep(0.5)  # let the last step's stragglers and the keep-alive sockets settle
        if not active:
            break
    return [ramp_result(name, steps[name]) for name, _u, _r in targets]


def fmt(x: float | None) -> str:
    return f"{x:7.1f}" if x is not None else "      -"


# ------------------------------------------------------------------------------------------------ the service
async def setup_persons(url: str, admin: str, persons: list[str], sets: list, rng) -> dict[str, str]:
    """Keys, three judgments each, and every candidate set scored a few times (features warmed)."""
    keys = {}
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as c:
        ah = {"Authorization": f"Bearer {admin}"}
        for p in persons:
            r = await c.post(f"/v1/persons/{p}/keys", headers=ah, json={})
            r.raise_for_status()
            keys[p] = r.json()["key"]
            prompt, texts = sets[rng.integers(len(sets))]
            for _ in range(3):
                a, b = rng.choice(len(texts), 2, replace=False)
                body = {"kind": "comparison", "prompt": prompt, "chosen": texts[a], "rejected": texts[b]}
                r = await c.post(f"/v1/persons/{p}/feedback", headers={"Authorization": f"Bearer {keys[p]}"},
                                 json=body)  # fmt: skip
                r.raise_for_status()
    for _ in range(4):  # new connections, so that every worker's feature cache is warmed (most likely)
        for prompt, texts in sets:
            r = httpx.post(f"{url}/v1/persons/{persons[0]}/score", headers={"Authorization": f"Bearer {keys[persons[0]]}"},
                           json={"prompt": prompt, "candidates": texts}, timeout=60)  # fmt: skip
            r.raise_for_status()
    return keys


def score_requests(persons: list[str], keys: dict[str, str], sets: list) -> list[bytes]:
    return [
        build("POST", f"/v1/persons/{p}/score", {"prompt": pr, "candidates": tx}, keys[p])
        for i, p in enumerate(persons)
        for pr, tx in [sets[i % len(sets)]]
    ]


def feedback_requests(persons: list[str], keys: dict[str, str], sets: list, n: int = 4096) -> list[bytes]:
    out = []
    for i in range(n):
        p = persons[i % len(persons)]
        prompt, texts = sets[(i // len(persons)) % len(sets)]
        a, b = (i * 7) % len(texts), (i * 7 + 5) % len(texts)
        body = {"kind": "comparison", "prompt": prompt, "chosen": texts[a], "rejected": texts[b]}
        out.append(build("POST", f"/v1/persons/{p}/feedback", body, keys[p]))
    return out


def candidate_sets(data: Any, n_sets: int, k: int) -> list[tuple[str, list[str]]]:
    sets = []
    for prompt, g in data.items.groupby("prompt", sort=True):
        texts = g["text"].astype(str).tolist()
        if len(texts) >= k:
            sets.append((str(prompt), texts[:k]))
        if len(sets) == n_sets:
            break
    return sets


async def fixed_rate(name: str, url: str, requests: list[bytes], rate: float, conns: int, args) -> dict:
    host, port = url.removeprefix("http://").split(":")
    st = await open_loop_step(host, int(port), requests, rate, args.fixed_seconds, conns, args.timeout)
    console.print(
        f"  {name:<34} {rate:>6.0f}/s from {conns} connections -> p50 {fmt(st['p50_ms'])} p99 "
        f"{fmt(st['p99_ms'])} ms, max {fmt(st['max_ms'])} ms, failed {st['failed'] + st['other'] + st['shed']}",
        highlight=False,
    )
    return {"phase": name, "connections": conns, **st}


def start_service(stack: contextlib.ExitStack, model_dir: Path, work: Path, name: str, extra: list[str]):
    """``personalign serve`` (SQLite file of its own) in a subprocess, stopped when ``stack`` closes."""
    from personalign.serve.launch import ServerProcess

    admin = "bench-" + secrets.token_hex(16)
    env = {"PERSONALIGN_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    db_url = f"sqlite:///{work / f'serve-{name}.db'}"
    srv = stack.enter_context(
        ServerProcess(model_dir, db_url, admin, env=env, extra_args=extra, start_timeout=300)
    )
    return srv, admin


async def run_all(model_dir: Path, sets: list, args, work: Path) -> tuple[list[dict[str, Any]], dict | None]:
    """Every server up at once (idle ones cost nothing), driven one at a time, taking turns at each rate."""
    body = {"prompt": sets[0][0], "candidates": sets[0][1]}
    bare_reqs = [build("POST", f"/bare/p{i:03d}", body) for i in range(64)]
    persons = [f"p{i:03d}" for i in range(args.persons)]
    runs: dict[int, dict[str, Any]] = {w: {"workers": w} for w in args.workers}
    nogc = None
    with contextlib.ExitStack() as stack:
        bare, svc = {}, {}
        for w in args.workers:
            bare[w] = stack.enter_context(BareServer(w))
            runs[w]["bare_workers_seen"] = wait_workers(bare[w].url, "/health", w)
            extra = ["--workers", str(w), "--max-inflight", str(args.max_inflight)]
            svc[w] = start_service(stack, model_dir, work, f"w{w}", extra)
            runs[w]["service_workers_seen"] = wait_workers(svc[w][0].url, "/v1/health", w)
        base = (
            None if args.no_baseline else start_service(stack, model_dir, work, "nogc", ["--no-group-commit"])
        )
        console.print(f"servers up: bare and service at {args.workers} worker(s)", highlight=False)
        keys, fb = {}, {}
        for w in args.workers:
            srv, admin = svc[w]
            keys[w] = await setup_persons(srv.url, admin, persons, sets, np.random.default_rng(0))
            fb[w] = feedback_requests(persons, keys[w], sets)
        targets = []
        for w in args.workers:
            targets.append((f"bare FastAPI, {w}w", bare[w].url, bare_reqs))
            targets.append((f"score ({args.candidates} cand.), {w}w", svc[w][0].url,
                            score_requests(persons, keys[w], sets)))  # fmt: skip
        results = await interleaved_ramps(targets, RATES, args)
        for w in args.workers:
            runs[w]["bare"] = results.pop(0)
            runs[w]["score"] = results.pop(0)
        for w in args.workers:
            runs[w]["feedback_100"] = await fixed_rate(f"feedback, group commit, {w}w", svc[w][0].url, fb[w],
                                                       100, 12, args)  # fmt: skip
            if w == args.workers[0] and base is not None:
                bkeys = await setup_persons(base[0].url, base[1], persons, sets, np.random.default_rng(0))
                nogc = await fixed_rate("feedback, no group commit, 1w", base[0].url,
                                        feedback_requests(persons, bkeys, sets), 100, 12, args)  # fmt: skip
        fb_targets = [(f"feedback, {w}w", svc[w][0].url, fb[w]) for w in args.workers]
        for w, res in zip(
            args.workers, await interleaved_ramps(fb_targets, FEEDBACK_RATES, args), strict=True
        ):
            runs[w]["feedback"] = res
        for w in args.workers:
            srv, admin = svc[w]
            runs[w]["server_metrics"] = httpx.get(
                srv.url + "/v1/metrics", headers={"Authorization": f"Bearer {admin}"}, timeout=30
            ).json()
    return [runs[w] for w in args.workers], nogc


# ------------------------------------------------------------------------------------------------ report
def report(runs: list[dict[str, Any]], nogc: dict[str, Any] | None, args) -> dict[str, Any]:
    table = Table(
        title=f"personalign serve vs bare FastAPI, open loop, loopback, {os.cpu_count()} cores, SQLite, "
        f"{args.candidates} candidates (p99 bound {args.p99_bound_ms:g} ms)"
    )
    cols = ("workers", "phase", "offered/s", "ok/s", "503", "failed", "p50 ms", "p99 ms", "sustained")
    for col in cols:
        table.add_column(col, justify="left" if col in ("phase",) else "right")
    for run in runs:
        for key in ("bare", "score", "feedback"):
            for st in run[key]["steps"]:
                table.add_row(
                    str(run["workers"]), run[key]["phase"], f"{st['offered_rps']:.0f}", f"{st['achieved_rps']:.0f}",
                    str(st["shed"]), str(st["failed"] + st["other"]), fmt(st["p50_ms"]).strip(),
                    fmt(st["p99_ms"]).strip(), "yes" if st["sustained"] else "no",
                )  # fmt: skip
        fx = run["feedback_100"]
        table.add_row(
            str(run["workers"]), f"{fx['phase']}, {fx['connections']} conns", f"{fx['offered_rps']:.0f}",
            f"{fx['achieved_rps']:.0f}", str(fx["shed"]), str(fx["failed"] + fx["other"]),
            fmt(fx["p50_ms"]).strip(), fmt(fx["p99_ms"]).strip(), "",
        )  # fmt: skip
    if nogc is not None:
        table.add_row(
            "1", f"{nogc['phase']}, {nogc['connections']} conns", f"{nogc['offered_rps']:.0f}",
            f"{nogc['achieved_rps']:.0f}", str(nogc["shed"]), str(nogc["failed"] + nogc["other"]),
            fmt(nogc["p50_ms"]).strip(), fmt(nogc["p99_ms"]).strip(), "",
        )  # fmt: skip
    console.print(table)
    by_w = {r["workers"]: r for r in runs}
    verdict: dict[str, Any] = {"p99_bound_ms": args.p99_bound_ms}
    for w, r in by_w.items():
        sc, bare = r["score"]["capacity_rps"], r["bare"]["capacity_rps"]
        shed = r["score"]["shed_step"]
        verdict[f"workers_{w}"] = {
            "bare_capacity_rps": bare,
            "score_capacity_rps": sc,
            "score_share_of_bare": sc / bare if bare else None,
            "feedback_capacity_rps": r["feedback"]["capacity_rps"],
            "score_shed_at_rps": r["score"]["shed_at_rps"],
            "score_503_at_shed_step": shed["shed"] if shed else 0,
            "score_p99_ms_accepted_at_shed_step": shed["p99_ms"] if shed else None,
            "feedback_p99_ms_100rps_12conns": r["feedback_100"]["p99_ms"],
            "workers_seen": [r["bare_workers_seen"], r["service_workers_seen"]],
        }
        line = (
            f"{w} worker(s): score sustained {sc:.0f} req/s (p99 <= {args.p99_bound_ms:g} ms), bare FastAPI "
            f"{bare:.0f} req/s -> {100 * sc / bare if bare else 0:.0f} % of the bare ceiling"
        )
        if shed:
            line += (
                f"; sheds from {shed['offered_rps']:.0f} req/s offered ({shed['shed']} x 503, accepted p99 "
                f"{fmt(shed['p99_ms']).strip()} ms)"
            )
        console.print(line, highlight=False)
        fx = r["feedback_100"]["p99_ms"]
        console.print(
            f"{w} worker(s): feedback p99 at 100 req/s from 12 connections: {fmt(fx).strip()} ms",
            highlight=False,
        )
    if nogc is not None:
        verdict["feedback_p99_ms_100rps_12conns_no_group_commit"] = nogc["p99_ms"]
        console.print(f"1 worker, no group commit: feedback p99 at 100 req/s from 12 connections: "
                      f"{fmt(nogc['p99_ms']).strip()} ms", highlight=False)  # fmt: skip
    ws = sorted(by_w)
    if len(ws) >= 2 and by_w[ws[0]]["score"]["capacity_rps"]:
        ratio = by_w[ws[-1]]["score"]["capacity_rps"] / by_w[ws[0]]["score"]["capacity_rps"]
        verdict["score_scaling"] = ratio
        console.print(f"score capacity, {ws[-1]} workers / {ws[0]}: {ratio:.2f}x", highlight=False)
    return verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--persons", type=int, default=50)
    ap.add_argument("--encoder", choices=["hashing", "minilm"], default="hashing")
    ap.add_argument("--step-seconds", type=float, default=3.0, help="seconds of each open-loop step")
    ap.add_argument("--fixed-seconds", type=float, default=8.0, help="seconds of the fixed 100 req/s phases")
    ap.add_argument(
        "--conns", type=int, default=512, help="most client connections (above the in-flight limit)"
    )
    ap.add_argument("--max-inflight", type=int, default=64, help="the service's --max-inflight")
    ap.add_argument(
        "--timeout", type=float, default=10.0, help="a request unanswered this long counts as failed"
    )
    ap.add_argument("--p99-bound-ms", type=float, default=100.0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the --no-group-commit feedback phase")
    ap.add_argument(
        "--note", default="", help="a note stored with the results (e.g. what else loaded the machine)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    args = ap.parse_args()

    from personalign.data.synthetic import generate_population
    from personalign.experiments.models import train_small_model

    load0 = os.getloadavg()
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="personalign-serve-bench-") as tmp:
        work = Path(tmp)
        data = generate_population(
            persons=60, comparisons_per_person=30, n_prompts=8, responses_per_prompt=16, seed=0
        )
        model_dir = train_small_model(work / "model", data=data, encoder=args.encoder, rank=8)
        sets = candidate_sets(data, 8, args.candidates)
        runs, nogc = asyncio.run(run_all(model_dir, sets, args, work))
    verdict = report(runs, nogc, args)
    out = {
        "benchmark": "serve_load",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "load_average_at_start": load0,
        "load_average_at_end": os.getloadavg(),
        "seconds": time.time() - t_start,
        "note": args.note,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "verdict": verdict,
        "runs": runs,
        "no_group_commit": nogc,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(out, indent=2))
    os.replace(tmp_out, args.out)
    if args.note:
        console.print(f"note: {args.note}", highlight=False)
    console.print(
        f"load average at start {load0[0]:.2f}, at end {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)"
    )
    args.out.with_suffix(".txt").write_text(console.export_text())
    print(f"wrote {args.out} and {args.out.with_suffix('.txt')}")


if __name__ == "__main__":
    main()
