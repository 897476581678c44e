"""`train --config FILE` and `eval --config FILE` (YAML or TOML): the file's keys are the command's option
names, the command line wins over the file, bad keys and values are one clean error, and the manifest of what
the run writes records the file. Through the console script's entry point."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from personalign.cli import main
from personalign.data.io import write_data
from personalign.data.synthetic import generate_population


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    pop = generate_population(persons=30, comparisons_per_person=15, alpha=0.1, seed=2)
    return write_data(pop, tmp_path_factory.mktemp("config") / "pop.parquet")


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``personalign ARGS`` through ``personalign.cli.main`` (what the console script runs)."""
    monkeypatch.setattr(sys, "argv", ["personalign", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _saved(folder: Path) -> tuple[dict, dict]:
    return (
        json.loads((folder / "config.json").read_text()),
        json.loads((folder / "manifest.json").read_text()),
    )


def test_train_reads_its_options_from_a_yaml_file(data_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "model"
    cfg = _write(
        tmp_path / "train.yaml",
        f"data: {data_file}\nencoder: hashing[dim=64]\nrank: 2\nmax-iter: 12\nseed: 4\nout: {out}\njson: true\n",
    )
    code, stdout, err = _main(monkeypatch, capsys, "train", "--config", str(cfg))
    assert code == 0, err
    assert json.loads(stdout)["personal_dims"] == 2
    config, manifest = _saved(out)
    assert config["params"]["rank"] == 2 and config["params"]["training"]["max_iter"] == 12
    assert (
        config["params"]["random_state"] == 4 and config["featurizer"]["encoder_name"] == "hashing-d64-s0-ng"
    )
    assert manifest["command"] == f"personalign train --config {cfg}" and manifest["seeds"] == [4]
    assert manifest["config"] == {
        "file": str(cfg),
        "sha256": hashlib.sha256(cfg.read_bytes()).hexdigest(),
        "values": {
            "data": str(data_file),
            "encoder": "hashing[dim=64]",
            "rank": 2,
            "max-iter": 12,
            "seed": 4,
            "out": str(out),
            "json": True,
        },
    }
    assert "--config" in (out / "README.md").read_text()  # the card's command reruns the same way


def test_the_command_line_wins_over_the_file(data_file, tmp_path, monkeypatch, capsys):
    cfg = _write(
        tmp_path / "train.toml",
        f'encoder = "hashing[dim=64]"\nrank = 2\nmax_iter = 12\nout = "{tmp_path / "from-file"}"\n',
    )
    out = tmp_path / "from-cli"
    args = ["train", str(data_file), "--config", str(cfg), "--rank", "3", "--out", str(out), "--json"]
    code, stdout, err = _main(monkeypatch, capsys, *args)
    assert code == 0, err
    config, manifest = _saved(out)
    assert config["params"]["rank"] == 3 and config["params"]["training"]["max_iter"] == 12
    assert not (tmp_path / "from-file").exists()
    assert (
        manifest["config"]["values"]["rank"] == 2
    )  # what the file said, beside the command that overrode it


def test_eval_reads_a_toml_file(data_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "eval"
    cfg = _write(
        tmp_path / "eval.toml",
        "\n".join(
            [
                'models = ["majority", "bt"]',
                "seeds = 1",
                "first-seed = 2",
                "k = [0, 2]",
                'encoder = "hashing[dim=64]"',
                "active_max_k = 0",
                'harmless = "none"',
                "max-train-pairs = 20",
                "max-test-pairs = 10",
                "",
            ]
        ),
    )
    code, _, err = _main(monkeypatch, capsys, "eval", str(data_file), "--config", str(cfg), "--out", str(out))
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["models"] == ["majority", "bt"] and res["config"]["ks"] == [0, 2]
    assert res["config"]["first_seed"] == 2 and res["config"]["seeds"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seeds"] == [2] and manifest["config"]["file"] == str(cfg)
    assert manifest["config"]["values"]["k"] == [0, 2]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("unknown.yaml", "rank: 2\nbogus: 1\n", "key 'bogus': not an option of this command; it has: data,"),
        ("float.yaml", "max-iter: 0.5\n", "key 'max-iter': expected an integer, got 0.5"),
        ("bool.yaml", "rank: true\n", "key 'rank': expected an integer, got True"),
        ("flag.toml", 'json = "yes"\n', "key 'json': expected true or false, got 'yes'"),
        ("nested.toml", "[train]\nrank = 2\n", "key 'train': not an option of this command"),
        ("table.yaml", "encoder: {name: hashing}\n", "key 'encoder': expected a single value, got a dict"),
        ("twice.yaml", "max-iter: 3\nmax_iter: 4\n", "key 'max_iter': sets 'max_iter' a second time"),
        ("itself.yaml", "config: other.yaml\n", "key 'config': not an option of this command"),
        ("list.yaml", "- rank\n", "expected a mapping of option names to values, got list"),
        ("syntax.yml", "rank: [1\n", "not valid YAML"),
        ("syntax.toml", "rank = \n", "not valid TOML"),
        ("config.json", "{}", "expected a .yaml, .yml or .toml file"),
    ],
)
def test_a_bad_config_is_one_clean_error_naming_file_and_key(
    name, text, message, data_file, tmp_path, monkeypatch, capsys
):
    cfg = _write(tmp_path / name, text)
    out = tmp_path / "m"
    code, _, err = _main(
        monkeypatch, capsys, "train", str(data_file), "--out", str(out), "--config", str(cfg)
    )
    assert code == 2
    assert err.startswith("error: ") and str(cfg) in err and message in " ".join(err.split())
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2  # one line (long ones may wrap)
    assert not out.exists()


def test_a_missing_config_file(data_file, tmp_path, monkeypatch, capsys):
    code, _, err = _main(monkeypatch, capsys, "eval", str(data_file), "--config", str(tmp_path / "no.yaml"))
    assert code == 2 and f"--config {tmp_path / 'no.yaml'}: no such file" in err and "Traceback" not in err


def test_the_file_can_supply_required_options(data_file, tmp_path, monkeypatch, capsys):
    """--out is required; from the file it counts as given, and without either it is the usual usage error."""
    code, _, err = _main(monkeypatch, capsys, "train", str(data_file), "--encoder", "hashing")
    assert code == 2 and "Missing option '--out'" in err
    cfg = _write(tmp_path / "c.yaml", f"out: {tmp_path / 'm'}\nencoder: hashing[dim=64]\nmax-iter: 5\n")
    code, _, err = _main(monkeypatch, capsys, "train", str(data_file), "--config", str(cfg), "--json")
    assert code == 0, err
    assert (tmp_path / "m" / "manifest.json").is_file()


def test_eval_prints_progress_lines_when_its_output_is_not_a_terminal(tmp_path, monkeypatch, capsys):
    """Into a log (no terminal) eval prints one line per seed, model and phase as it goes, not a bar at the end."""
    data = "synthetic:persons=24,comparisons_per_person=12"
    args = [
        "eval",
        data,
        "--models",
        "majority,bt",
        "--seeds",
        "2",
        "--k",
        "0",
        "--encoder",
        "hashing[dim=32]",
    ]
    args += ["--active-max-k", "0", "--harmless", "none", "--out", str(tmp_path / "ev")]
    code, out, err = _main(monkeypatch, capsys, *args)
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith("[")]
    order = [f"seed {s}/2 · {m}: fitting" for s in (1, 2) for m in ("majority", "bt")]
    at = [next(i for i, ln in enumerate(lines) if o in ln) for o in order]
    assert at == sorted(at)  # in the order the work happens
    done, total = lines[-1][1:].split("]")[0].split("/")
    assert done == total and lines[-1].endswith(" s)")  # the last line: all done, with its elapsed time
    assert out.index(order[-1]) < out.index("wrote results.json")  # before the final summary
