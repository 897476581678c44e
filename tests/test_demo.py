"""The demo package: its steps in order, imported directly; and the layering rule it serves (no demo step and no
terminal rendering inside the library layers)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from rich.console import Console

import personalign
from personalign import demo

LIBRARY_LAYERS = (
    "data",
    "features",
    "models",
    "bounds",
    "audit",
    "evaluate",
    "serve",
    "integrations",
    "reports",
)
ABOVE_THE_LIBRARY = ("personalign.demo", "personalign.experiments", "personalign.render", "personalign.cli")
TITLES = [
    "Synthetic pluralistic population",
    "Train and compare: aggregated vs personalized",
    "Aggregation audit",
    "Bounded personalization",
    "Personalization service",
    "Best-of-N with a local model",
    "Evaluate: personalized against aggregated",
]
MODULES = ["population", "train", "audit", "bounds", "serve", "generate", "evaluate"]


def test_steps_are_the_seven_in_order_each_from_its_own_module():
    assert [t for t, _ in demo.STEPS] == TITLES
    for (_, step), name in zip(demo.STEPS, MODULES, strict=True):
        assert callable(step)
        assert step.__module__ == f"personalign.demo.{name}"
        assert list(inspect.signature(step).parameters) == ["ctx"]


def test_the_package_names_its_steps_in_imports_not_strings():
    tree = ast.parse(inspect.getsource(demo))
    imported = {
        a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("personalign.demo.")
        for a in n.names
    }
    assert {step.__name__ for _, step in demo.STEPS} <= imported
    assert "importlib" not in {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def test_run_demo_runs_steps_in_order_and_only_those_asked(tmp_path):
    seen: list[str] = []

    def make(tag: str):
        def step(ctx: demo.DemoContext) -> None:
            seen.append(tag)
            ctx.state[tag] = len(seen)

        return step

    steps = [("First thing", make("a")), ("Second thing", make("b")), ("Third thing", make("c"))]
    con = Console(record=True, width=100)
    ctx = demo.run_demo(tmp_path / "out", quick=True, seed=3, steps=steps, console=con)
    assert seen == ["a", "b", "c"] and ctx.state == {"a": 1, "b": 2, "c": 3}
    assert ctx.quick and ctx.seed == 3 and (tmp_path / "out").is_dir()
    text = con.export_text()
    assert text.index("1/3 First thing") < text.index("2/3 Second thing") < text.index("3/3 Third thing")
    assert "demo finished" in text

    seen.clear()
    demo.run_demo(
        tmp_path / "out2", steps=steps, only=["third", "FIRST"], console=Console(file=None, quiet=True)
    )
    assert seen == ["a", "c"]


def _library_files() -> list[Path]:
    root = Path(personalign.__file__).parent
    return [p for layer in LIBRARY_LAYERS for p in sorted((root / layer).rglob("*.py"))]


def test_no_library_layer_holds_a_demo_step_or_renders_with_rich():
    files = _library_files()
    assert len(files) > 30
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for n in ast.walk(tree):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.endswith("_step"):
                offenders.append(f"{path}: def {n.name}")
            mods = (
                [a.name for a in n.names]
                if isinstance(n, ast.Import)
                else [n.module or ""]
                if isinstance(n, ast.ImportFrom)
                else []
            )
            offenders += [f"{path}: import {m}" for m in mods if m == "rich" or m.startswith("rich.")]
            if path.name != "__main__.py":  # an entry point (python -m personalign.serve) may start the CLI
                offenders += [f"{path}: import {m}" for m in mods if m.startswith(ABOVE_THE_LIBRARY)]
    assert offenders == []
