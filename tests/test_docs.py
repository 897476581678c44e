"""The documentation site: the strict build passes, and it fails on each kind of broken reference.

The real build (mkdocs.yml: prose pages, the API reference from the docstrings, the CLI reference and the service
routes generated at build time) runs in a temporary folder. Small sites built next to it, each with one
deliberate break, show that the check fails when it should (a stale role in a docstring, an identifier or anchor
in a page, a module that does not exist), so it cannot pass silently.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _env() -> dict[str, str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``site`` (the mkdocs of this interpreter)."""
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=config.parent, timeout=300)


def test_the_site_builds_strict_with_every_generated_page(tmp_path):
    res = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert res.returncode == 0, res.stdout + res.stderr
    site = tmp_path / "site"
    cli = (site / "cli" / "index.html").read_text()
    for command in ("personalign train", "personalign data convert", "personalign serve keys create"):
        assert command in cli  # rendered from the typer app, nested groups included
    assert "--list-models" in cli and "<!-- cli-reference -->" not in cli
    assert "/v1/persons/{person_id}/feedback" in (site / "service" / "index.html").read_text()
    models = (site / "api" / "models" / "index.html").read_text()
    assert 'id="personalign.models.LowRankBT"' in models and 'id="personalign.models.fit_lbfgs"' in models
    # docstring roles are links, not literal Sphinx syntax
    assert ":class:`" not in models and ":func:`" not in models
    assert 'href="#personalign.models.artifacts"' in models


def _tiny_site(
    tmp_path: Path, docstring: str, page: str = "::: tinypkg\n", other: str = "# Other\n\n## Here\n"
):
    """A one-package site using the project's docstring-role extension; returns its config file."""
    (tmp_path / "src" / "tinypkg").mkdir(parents=True)
    (tmp_path / "src" / "tinypkg" / "__init__.py").write_text(
        textwrap.dedent(
            f'''
            """A package for the docs tests."""


            def here() -> int:
                """A function that exists."""
                return 1


            def caller() -> int:
                """{docstring}"""
                return here()
            '''
        )
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(page)
    (tmp_path / "docs" / "other.md").write_text(other)
    ext = f"{DOCS / 'crossrefs.py'}:SphinxRoles"
    (tmp_path / "mkdocs.yml").write_text(
        textwrap.dedent(
            f"""
            site_name: tiny
            theme: {{name: mkdocs}}
            validation: {{anchors: warn, unrecognized_links: warn}}
            nav: [index.md, other.md]
            plugins:
              - autorefs
              - mkdocstrings:
                  handlers:
                    python:
                      paths: [src]
                      options:
                        docstring_style: null
                        show_source: false
                        extensions:
                          - {ext}:
                              packages: [tinypkg]
            """
        )
    )
    return tmp_path / "mkdocs.yml"


def test_a_docstring_role_that_resolves_becomes_a_link(tmp_path):
    res = mkdocs_build(
        _tiny_site(tmp_path, "Calls :func:`here` (and :func:`tinypkg.here`)."), tmp_path / "site"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    html = (tmp_path / "site" / "index.html").read_text()
    assert len(re.findall(r'href="#tinypkg\.here"', html)) >= 2 and ":func:" not in html


@pytest.mark.parametrize(
    ("docstring", "page", "other", "expected"),
    [
        (
            "Calls :func:`gone`.",
            "::: tinypkg\n",
            "# Other\n",
            "names nothing that exists",
        ),  # a stale docstring
        ("Calls :meth:`here.nothing`.", "::: tinypkg\n", "# Other\n", ":meth:`here.nothing`"),
        (
            "Fine.",
            "::: tinypkg\n\nSee [gone][tinypkg.gone].\n",
            "# Other\n",
            "tinypkg.gone",
        ),  # page identifier
        ("Fine.", "::: tinypkg.gone\n", "# Other\n", "tinypkg.gone"),  # a module that does not exist
        (
            "Fine.",
            "::: tinypkg\n\nSee [there](other.md#nowhere).\n",
            "# Other\n",
            "nowhere",
        ),  # a broken anchor
    ],
    ids=["stale-role", "stale-member", "page-identifier", "missing-module", "broken-anchor"],
)
def test_a_broken_reference_fails_the_build(tmp_path, docstring, page, other, expected):
    res = mkdocs_build(_tiny_site(tmp_path, docstring, page, other), tmp_path / "site")
    assert res.returncode != 0
    assert expected in res.stdout + res.stderr


def test_every_public_name_has_a_docstring():
    """What the packages export (``__all__``), and the public methods of exported classes, all have a docstring
    (an override may inherit its base method's, as the API reference shows it)."""
    import griffe

    sys.path.insert(0, str(DOCS))
    try:
        from crossrefs import SphinxRoles
    finally:
        sys.path.remove(str(DOCS))
    pkg = griffe.load(
        "personalign",
        search_paths=[str(ROOT / "src")],
        extensions=griffe.load_extensions(SphinxRoles()),
        resolve_aliases=True,
    )
    missing = set()
    modules = [pkg]
    while modules:
        mod = modules.pop()
        modules.extend(m for m in mod.modules.values() if m.is_init_module or m.is_package)
        for name in mod.exports or []:
            member = mod.members.get(str(name))
            target = member.final_target if member is not None and member.is_alias else member
            if target is None or target.kind.value not in ("function", "class"):
                continue
            methods = [m for n, m in target.members.items() if target.is_class and not n.startswith("_")]
            for obj in [target, *[m for m in methods if not m.is_alias and m.is_function]]:
                if obj.docstring is None:
                    missing.add(f"{obj.path} ({obj.relative_filepath}:{obj.lineno})")
    assert not missing, "public names without a docstring:\n" + "\n".join(sorted(missing))


def _blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", (DOCS / page).read_text(), re.S | re.M)


@pytest.mark.slow
def test_the_pages_python_examples_run_as_written(tmp_path):
    """The getting-started session, the data page's JSONL example and the grid search of the models page."""
    (tmp_path / "mine.jsonl").write_text(_blocks("data.md", "json")[0])
    scripts = {
        "getting_started.py": "\n".join(_blocks("getting-started.md", "python")),
        "data.py": "\n".join(_blocks("data.md", "python"))
        + "\nassert list(data.users['age']) == ['30-39', '18-29']",
        "models.py": "\n".join(_blocks("models.md", "python")),
    }
    for name, code in scripts.items():
        assert code.strip(), name
        (tmp_path / name).write_text(code)
        res = subprocess.run(
            [sys.executable, name], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600
        )
        assert res.returncode == 0, f"{name}:\n{res.stdout}\n{res.stderr[-3000:]}"
    assert (tmp_path / "model" / "config.json").is_file()
