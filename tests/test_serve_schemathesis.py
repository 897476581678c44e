"""Schemathesis over the service's OpenAPI schema: every phase it has (examples, coverage, fuzzing, stateful), every
check, with an admin key, against the real server (uvicorn in a subprocess); the run must find 0 failures.

Bounded and reproducible: a fixed seed and a fixed number of examples per operation. The default run (SQLite, a
few examples per operation) takes well under a minute; the slow one runs more examples on SQLite and on
PostgreSQL (when PERSONALIGN_TEST_PG_URL is set: ``export PERSONALIGN_TEST_PG_URL=$(scripts/start_postgres.sh)``).
Settings that are not the run's bounds live in tests/schemathesis.toml.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra (pip install -e '.[dev]')")

from personalign.serve.launch import ServerProcess  # noqa: E402
from test_serve import PG_URL, fresh_db  # noqa: E402

CONFIG = Path(__file__).with_name("schemathesis.toml")
PHASES = "examples,coverage,fuzzing,stateful"
SEED = 20261202


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from personalign.experiments.models import train_small_model

    return train_small_model(tmp_path_factory.mktemp("st-model") / "model", rank=4, seed=0)


def run_schemathesis(model_dir: Path, db_url: str, tmp: Path, max_examples: int) -> dict:
    """Start the service on ``db_url``, run Schemathesis against it and return its JSON report."""
    admin = "adm-" + secrets.token_hex(16)
    report = tmp / f"schemathesis-{uuid.uuid4().hex[:8]}.json"
    with ServerProcess(model_dir, db_url, admin, env={"PERSONALIGN_CACHE": str(tmp / "cache")}) as srv:
        cmd = [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
            f"{srv.url}/openapi.json", "--checks", "all", "--phases", PHASES,
            "--max-examples", str(max_examples), "--seed", str(SEED), "--workers", "1",
            "--header", f"Authorization: Bearer {admin}", "--request-timeout", "30",
            "--report", "json", "--report-json-path", str(report), "--output-truncate", "true",
        ]  # fmt: skip
        # in the temporary folder: Schemathesis keeps a cache where it runs
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp)
        server_log = srv.log()
    assert report.exists(), f"schemathesis wrote no report (exit {out.returncode}):\n{out.stdout[-4000:]}"
    data = json.loads(report.read_text())
    detail = f"{out.stdout[-6000:]}\n--- server log ---\n{server_log[-3000:]}"
    assert data["complete"], detail
    assert data["failures"] == [] and data["errors"] == [], detail
    assert data["exit_code"] == 0 and out.returncode == 0, detail
    cases = data["test_cases"]
    assert cases["with_failures"] == 0 and cases["errored"] == 0, detail
    # it really ran: every operation, and each phase the schema gives material for (no examples in it: skipped)
    assert cases["generated"] >= 16 * max_examples, detail
    phases = data["phases"]
    assert all(phases[p]["status"] == "success" for p in ("coverage", "fuzzing", "stateful")), phases
    return data


def test_schemathesis_sqlite(model_dir: Path, tmp_path: Path) -> None:
    run_schemathesis(model_dir, f"sqlite:///{tmp_path / 'st.db'}", tmp_path, max_examples=8)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_schemathesis_more_examples(kind: str, model_dir: Path, tmp_path: Path) -> None:
    if kind == "postgresql" and not PG_URL:
        pytest.skip(
            "PERSONALIGN_TEST_PG_URL is not set (scripts/start_postgres.sh starts a local PostgreSQL)"
        )
    with fresh_db(kind, tmp_path) as url:
        run_schemathesis(model_dir, url, tmp_path, max_examples=40)
