"""The admin reload loads models and policies only under the service's model root (``--model-root``; default the
folder of the start model): a path outside it, after resolving symlinks and ``..``, gets a 403 JSON error and
nothing is loaded."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from personalign.experiments.models import train_small_model
from personalign.serve.app import ServeConfig, create_app

ADMIN = {"Authorization": "Bearer adm"}
POLICY = "name: p\nconstraints:\n  - {name: r, scorer: {type: regex, patterns: [x]}, threshold: 0.5, direction: max}\n"


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> dict[str, Path]:
    """root/a (the start model), root/b (another model), outside/c (a model outside the root), policies both
    sides, and a symlink inside the root pointing outside."""
    base = tmp_path_factory.mktemp("reload-root")
    root, outside = base / "root", base / "outside"
    a = train_small_model(root / "a", rank=2, seed=0, persons=10, comparisons_per_person=8)
    b = train_small_model(root / "b", rank=3, seed=1, persons=10, comparisons_per_person=8)
    c = shutil.copytree(b, outside / "c")
    (root / "p.yaml").write_text(POLICY)
    (outside / "p.yaml").write_text(POLICY)
    (root / "link").symlink_to(outside, target_is_directory=True)
    return {"base": base, "root": root, "outside": outside, "a": a, "b": b, "c": Path(c)}


@pytest.fixture
def client(layout, tmp_path) -> Iterator[TestClient]:
    cfg = ServeConfig(model_dir=str(layout["a"]), db_url=str(tmp_path / "s.db"), admin_keys=["adm"])
    with TestClient(create_app(cfg), raise_server_exceptions=False) as c:
        yield c


def _reload(c: TestClient, **body: str):
    return c.post("/v1/admin/model/reload", json=body, headers=ADMIN)


def _state(c: TestClient) -> tuple[str, int, str | None]:
    h = c.app.state.service.holder
    return h.current.version, h.reloads, h.current.policy_path


def test_outside_the_root_is_refused_and_nothing_loads(client, layout):
    before = _state(client)
    refused = [
        {"model_dir": str(layout["c"])},  # a real model, outside
        {"model_dir": str(layout["root"] / ".." / "outside" / "c")},  # `..` out of the root
        {"model_dir": str(layout["root"] / "link" / "c")},  # a symlink inside pointing outside
        {"model_dir": "/"},
        {"policy": str(layout["outside"] / "p.yaml")},
        {"policy": str(layout["root"] / "link" / "p.yaml")},
        {
            "model_dir": str(layout["b"]),
            "policy": str(layout["outside"] / "p.yaml"),
        },  # one bad path is enough
    ]
    for body in refused:
        r = _reload(client, **body)
        assert r.status_code == 403, (body, r.text)
        err = r.json()["error"]
        assert err["code"] == "forbidden" and "outside the model root" in err["message"]
        assert _state(client) == before, body  # nothing was loaded or swapped


def test_inside_the_root_reloads(client, layout):
    v0 = _state(client)[0]
    r = _reload(client, model_dir=str(layout["b"]), policy=str(layout["root"] / "p.yaml"))
    assert r.status_code == 200, r.text
    version, reloads, policy = _state(client)
    assert version != v0 and reloads == 1 and policy == str((layout["root"] / "p.yaml").resolve())
    # `..` that stays inside, and a packaged preset by name
    r = _reload(client, model_dir=str(layout["root"] / "b" / ".." / "a"), policy="rules")
    assert r.status_code == 200, r.text
    assert _state(client) == (v0, 2, "rules")


def test_a_configured_root(layout, tmp_path):
    cfg = ServeConfig(
        model_dir=str(layout["a"]),
        db_url=str(tmp_path / "s.db"),
        admin_keys=["adm"],
        model_root=str(layout["base"]),
    )
    with TestClient(create_app(cfg), raise_server_exceptions=False) as c:
        assert _reload(c, model_dir=str(layout["c"])).status_code == 200
        assert _reload(c, model_dir=str(layout["base"].parent)).status_code == 403
