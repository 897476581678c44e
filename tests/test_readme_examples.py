"""The README's shell and Python examples run as written, on small data.

Every fenced ``bash``/``sh``/``shell`` and ``python`` block of README.md is extracted (with markdown-it-py) and run
in a fresh temporary working folder: shell blocks with ``bash -e -o pipefail`` and ``personalign`` on the PATH
(this checkout's package, run by the test's interpreter), Python blocks with the test's interpreter. Each must exit 0.

The only changes made to a block are the rules below, each with its reason; a rule that no longer matches the
README fails the test, so the rules cannot go stale silently:

- ``SIZES``: smaller populations, fewer seeds, fewer tokens, the hashing encoder instead of MiniLM (what the
  example shows is unchanged, only its size; MiniLM is tested elsewhere and costs minutes on a small CPU).
- ``SERVE``: a ``personalign serve`` line is started in the background on a free port, the test waits for
  ``/v1/health`` and the server is stopped when the block ends (a server does not exit by itself).
- ``SKIPPED``: blocks that are not run, by their first line, with the reason.
- ``SLOW``: blocks that are run only with the slow tests (``-m slow``), by their first line.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

import personalign

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL = {"bash", "sh", "shell"}
PYTHON = {"python", "py"}

# (pattern, replacement, why): applied to every block, in order; each must match at least one block
SIZES: list[tuple[str, str, str]] = [
    (
        r"persons=500, comparisons_per_person=40",
        "persons=120, comparisons_per_person=8",
        "a small population",
    ),
    (r'get_encoder\("minilm"\)', 'get_encoder("hashing")', "the hashing encoder"),
    (r"--persons 300 --comparisons 40", "--persons 120 --comparisons 8", "a small population"),
    (
        r"(?m)^personalign train ",
        "personalign train --encoder hashing --max-iter 30 ",
        "the hashing encoder, short",
    ),
    (r"synthetic:persons=200,", "synthetic:persons=40,", "a small population"),
    (r"--seeds 2 ", "--seeds 1 ", "one seed (the option still wins over the file's 5)"),
    (r"(?m)^encoder: hashing$", "encoder: hashing[dim=64]", "a smaller hashing encoder"),
    (r"-n 6 ", "-n 2 ", "two sampled answers"),
    (r"--max-new-tokens 48", "--max-new-tokens 8", "short answers"),
    (r"curl -s ", "curl -sf ", "fail on an HTTP error"),
]
# a `personalign serve --model ...` line (its comment dropped): started in the background, then /v1/health
SERVE = re.compile(r"(?m)^(personalign serve --model [^#\n]*?)\s*(#[^\n]*)?$")
SKIPPED: dict[str, str] = {
    "make demo": "installs a virtual environment and runs the whole demo: what CI's `make demo` job does",
    "make test": "runs the test suite itself (this test included)",
}
SLOW: set[str] = {
    "personalign data synth --persons 300 --comparisons 40 --seed 0 --out pop\npersonalign train pop/population",
}


@dataclass
class Block:
    lang: str
    line: int  # 1-based line of the opening fence in README.md
    text: str

    @property
    def id(self) -> str:
        first = self.text.strip().splitlines()[0]
        return f"L{self.line}-{self.lang}-{re.sub(r'[^A-Za-z0-9]+', '-', first)[:40].strip('-')}"


def readme_blocks() -> list[Block]:
    """The README's fenced shell and Python blocks, in order."""
    tokens = MarkdownIt().parse(README.read_text(encoding="utf-8"))
    out = []
    for t in tokens:
        lang = (t.info or "").split()[0].lower() if t.info else ""
        if t.type == "fence" and lang in SHELL | PYTHON:
            out.append(Block("python" if lang in PYTHON else "bash", t.map[0] + 1, t.content))
    return out


BLOCKS = readme_blocks()


def _skip_reason(block: Block) -> str | None:
    return next((why for first, why in SKIPPED.items() if block.text.lstrip().startswith(first)), None)


def _is_slow(block: Block) -> bool:
    return any(block.text.lstrip().startswith(first) for first in SLOW)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(block: Block, port: int) -> str:
    """The block's text after the rules (``SIZES``, then ``SERVE``) and the port substitution."""
    text = block.text
    for pattern, repl, _ in SIZES:
        text = re.sub(pattern, repl, text)
    if block.lang == "bash":
        text = text.replace("--port 8000", f"--port {port}").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        health = f"http://127.0.0.1:{port}/v1/health"
        text = SERVE.sub(
            lambda m: (
                f"{m.group(1)} &\nSERVE_PID=$!\ntrap 'kill $SERVE_PID 2>/dev/null' EXIT\n"
                f"wait_for_health {health}"
            ),
            text,
        )
    return text


def _prelude(python: str) -> str:
    """Shell helpers a prepared block may call: wait for a server, and curl where it is not installed."""
    return f"""
wait_for_health() {{
  for _ in $(seq 1 240); do
    "{python}" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" \\
      2>/dev/null && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || {{ echo "the server exited" >&2; return 1; }}
    sleep 0.5
  done
  echo "no answer from $1" >&2; return 1
}}
command -v curl >/dev/null || curl() {{
  "{python}" -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[-1]).read().decode())" "$@"
}}
"""


def _environment(tmp_path: Path) -> dict[str, str]:
    """PATH with a ``personalign`` that runs this checkout's package with the test's interpreter."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "personalign"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m personalign "$@"\n')
    wrapper.chmod(0o755)
    src = str(Path(personalign.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_block(block: Block, tmp_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    work = tmp_path / "work"
    work.mkdir()
    env = _environment(tmp_path)
    text = prepare(block, _free_port())
    if block.lang == "python":
        script = tmp_path / "example.py"
        script.write_text(text, encoding="utf-8")
        cmd = [sys.executable, str(script)]
    else:
        script = tmp_path / "example.sh"
        script.write_text(_prelude(sys.executable) + text, encoding="utf-8")
        cmd = ["bash", "-e", "-o", "pipefail", str(script)]
    proc = subprocess.Popen(
        cmd,
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(
            proc.pid, signal.SIGKILL
        )  # the block's own process group: the shell and a server it started
        out, err = proc.communicate()
        pytest.fail(f"README block at line {block.line} ran over {timeout} s:\n{text}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# ------------------------------------------------------------------------------------------ the rules
def test_the_readme_has_the_examples_this_test_knows():
    assert len(BLOCKS) >= 5
    assert any(b.lang == "python" for b in BLOCKS) and any(b.lang == "bash" for b in BLOCKS)


@pytest.mark.parametrize("pattern, repl, why", SIZES, ids=[w for _, _, w in SIZES])
def test_every_substitution_rule_still_matches(pattern, repl, why):
    assert any(re.search(pattern, b.text) for b in BLOCKS), f"stale rule ({why}): {pattern!r}"


def test_every_skip_and_slow_rule_still_matches():
    for first in [*SKIPPED, *SLOW]:
        assert any(b.text.lstrip().startswith(first) for b in BLOCKS), f"stale rule: {first!r}"
    assert any(SERVE.search(b.text) for b in BLOCKS if b.lang == "bash"), "stale rule: the serve line"


def test_the_rules_change_sizes_not_what_an_example_does():
    """After the rules, each block runs the same commands and calls (a substitution keeps every line)."""
    for b in BLOCKS:
        before = [ln for ln in b.text.splitlines() if ln.strip()]
        after = prepare(b, 8123)
        for line in before:
            head = line.split()[0]
            assert head in after, (b.id, head)


# ------------------------------------------------------------------------------------------ the examples
def _params():
    out = []
    for b in BLOCKS:
        marks = []
        if _skip_reason(b):
            marks.append(pytest.mark.skip(reason=_skip_reason(b)))
        elif _is_slow(b):
            marks.append(pytest.mark.slow)
        out.append(pytest.param(b, id=b.id, marks=marks))
    return out


@pytest.mark.parametrize("block", _params())
def test_readme_example_runs(block, tmp_path):
    res = run_block(block, tmp_path)
    assert res.returncode == 0, (
        f"README block at line {block.line} exited {res.returncode}:\n{prepare(block, 0)}\n"
        f"--- stdout ---\n{res.stdout[-3000:]}\n--- stderr ---\n{res.stderr[-3000:]}"
    )
    assert "Traceback" not in res.stderr


def test_a_failing_example_is_caught(tmp_path):
    """The harness itself: a block whose first command fails stops there with its exit status."""
    block = Block("bash", 0, "personalign train missing.parquet --out m\necho never\n")
    res = run_block(block, tmp_path)
    assert res.returncode == 2 and "never" not in res.stdout and "error:" in res.stderr
