"""Start the service in a subprocess on loopback (a free port) and wait until it answers: used by the demo, the
load benchmark and the tests, which all talk to the real server over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``personalign serve`` in a child process. Use as a context manager, or ``start()`` / ``stop()`` / ``kill()``.

    The child's output goes to a log file (``log_path``) so a failing start can be explained.
    """

    def __init__(
        self,
        model_dir: str | Path,
        db_url: str,
        admin_key: str,
        policy: str | Path | None = None,
        host: str = "127.0.0.1",
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.model_dir, self.db_url, self.admin_key = str(model_dir), db_url, admin_key
        self.policy, self.host = policy, host
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerProcess:
        last = ""
        for _attempt in range(3):  # a port taken between free_port() and bind: try another
            self.port = free_port(self.host)
            fd, log = tempfile.mkstemp(prefix="personalign-serve-", suffix=".log")
            os.close(fd)
            self.log_path = Path(log)
            self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
            cmd = [
                sys.executable, "-m", "personalign.serve", "--model", self.model_dir, "--db", self.db_url,
                "--host", self.host, "--port", str(self.port), "--admin-key", self.admin_key, *self.extra_args,
            ]  # fmt: skip
            if self.policy:
                cmd += ["--policy", str(self.policy)]
            self.proc = subprocess.Popen(
                cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
            if self._wait_ready():
                return self
            last = self.log_path.read_text(errors="replace")[-4000:]
            self.kill()
            if "address already in use" not in last.lower():
                break
        raise RuntimeError(f"the service did not start:\n{last}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                if httpx.get(self.url + "/v1/health", timeout=1.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM; uvicorn finishes in-flight requests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all (the crash the durability test simulates)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
