"""The person explanation (personalign.bounds.explain): named directions with uncertainty, provenance, the bounds'
effect and the monitors in words; the same from `personalign explain` and from the profile endpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from personalign.bounds.explain import explain_person, monitor_notes, read_texts
from personalign.cli import app
from personalign.cli.common import run_guarded
from personalign.errors import DataError
from personalign.experiments.models import train_small_model
from personalign.features.descriptors import available_descriptors, text_descriptors
from personalign.models import Posterior, load_model
from personalign.models.directions import principal_axes
from personalign.serve.app import ServeConfig, create_app

ADMIN = {"X-API-Key": "adm"}

# lengths and exclamation marks vary independently, so each names one direction of LineModel
TEXTS = [
    " ".join(["word"] * n) + ("!" if bang else ".")
    for n, bang in [(3, 0), (5, 1), (8, 0), (11, 1), (14, 1), (17, 0), (20, 0), (24, 1), (28, 1), (32, 0)]
]
POLITE_LONG = (
    "Thank you for asking, here is a careful and complete answer with every step you need to follow."
)
RUDE_LONGER = POLITE_LONG + " Only an idiot would not know this already, but here it is again for you."


class LineModel:
    """A two-direction linear-Gaussian model whose basis is readable: g(x) = (words / 10, exclamation marks)."""

    def __init__(self) -> None:
        self.user_units_, self.added_, self.train_counts_ = {"ann": 0}, {}, {"ann": 12}

    def prior(self) -> Posterior:
        return Posterior(np.zeros(2), np.diag([4.0, 1.0]), 0)

    def posterior(self, user_id: str) -> Posterior:
        if user_id == "ann":  # +1.5 population sds on length, known well; nothing learned on exclamations
            return Posterior(np.array([3.0, 0.0]), np.diag([0.04, 1.0]), 0)
        return self.prior()

    def basis(self, prompts, responses):
        g = np.array([[len(r.split()) / 10.0, r.count("!")] for r in responses], dtype=float)
        return np.zeros(len(responses)), g


# ------------------------------------------------------------------------------------------ descriptors
def test_text_descriptors_measure_what_they_say():
    d = text_descriptors(
        ["I think we're fine, don't you?", "The committee approved the budget.", "Wow! Great!"]
    )
    assert list(d["words"]) == [6, 5, 2]
    assert d["contractions"][0] == pytest.approx(2 / 6) and d["contractions"][1] == 0
    assert d["first_person"][0] == pytest.approx(2 / 6) and d["first_person"][1] == 0
    assert d["exclamations"][2] == 1.0 and d["exclamations"][1] == 0
    if "sentiment" in available_descriptors():
        s = text_descriptors(["I love this, it is wonderful.", "I hate this, it is awful."])["sentiment"]
        assert s[0] > 0.3 > -0.3 > s[1]
    if "reading_ease" in available_descriptors():
        r = text_descriptors(
            ["The cat sat on the mat.", "Institutional considerations necessitate deliberation."]
        )
        assert r["reading_ease"][0] > r["reading_ease"][1] + 30


# ------------------------------------------------------------------------------------------ directions
def test_principal_axes_place_a_person_in_population_sds():
    prior = Posterior(np.array([1.0, -1.0]), np.array([[1.0, 0.0], [0.0, 9.0]]), 0)
    axes = principal_axes(prior)
    assert np.allclose(axes.variances, [9.0, 1.0])
    assert np.allclose(np.abs(axes.vectors), [[0, 1], [1, 0]]) and (axes.vectors.max(0) > 0).all()
    z, sd = axes.position(Posterior(np.array([1.5, 5.0]), np.diag([0.25, 0.09]), 3))
    assert np.allclose(z, [6.0 / 3.0, 0.5]) and np.allclose(sd, [0.3 / 3.0, 0.5])
    assert len(principal_axes(prior, max_axes=1)) == 1


def test_directions_are_named_by_texts_and_descriptors_with_uncertainty():
    e = explain_person(LineModel(), "ann", texts=TEXTS)
    length, bang = e.directions
    assert length.variance_share == pytest.approx(0.8) and bang.variance_share == pytest.approx(0.2)
    assert length.position == pytest.approx(1.5) and length.sd == pytest.approx(0.1) and length.confident
    top = length.descriptors[0]
    assert top.name == "words" and top.correlation == pytest.approx(1.0)
    assert length.high_end.startswith("longer") and length.low_end.startswith("shorter")
    assert length.high_texts[0] == TEXTS[-1] and length.low_texts[0] == TEXTS[0]
    assert length.summary == f"prefers {length.high_end} answers than most (+1.5 sd, confident)"
    assert "more exclamatory" in bang.high_end and not bang.confident
    assert bang.summary.startswith("not known yet")
    assert e.source == "trained" and e.n_training_judgments == 12 and "12 training judgments" in e.provenance
    assert e.reference == {"source": "given", "n": len(TEXTS)}


def test_an_unknown_person_gets_the_population_prior_explained():
    e = explain_person(LineModel(), "zed", texts=TEXTS)
    assert e.source == "prior" and e.n_training_judgments == 0 and "does not know 'zed'" in e.notes[0]
    assert [d.position for d in e.directions] == [0.0, 0.0] and [d.sd for d in e.directions] == [1.0, 1.0]
    bare = explain_person(LineModel(), "ann")  # no reference texts: placed but not named
    assert bare.directions[0].high_texts == [] and "no reference texts" in bare.notes[-1]
    assert "unnamed" in bare.directions[0].summary


def test_the_bounds_effect_names_the_constraint_that_changed_an_answer():
    answers = [
        {"prompt": "help?", "candidates": [POLITE_LONG, RUDE_LONGER]},
        {"prompt": "help?", "candidates": ["Short.", POLITE_LONG]},
    ]
    e = explain_person(LineModel(), "ann", texts=TEXTS, policy="rules", answers=answers)
    blocked, kept = e.bounds.answers
    assert blocked.preferred == RUDE_LONGER and blocked.served == POLITE_LONG
    assert blocked.changed and blocked.constraint == "no_insults"
    assert "no_insults scored 1.00, must be at most 0.00" in blocked.reason
    assert not kept.changed and kept.served == POLITE_LONG and kept.constraint is None
    assert "changed 1 of your last 2 answers" in e.bounds.summary
    tr = e.bounds.trust_region
    assert tr["distance"] == pytest.approx(1.5) and not tr["outside"] and tr["projected_shift"] == 0.0
    far = explain_person(
        LineModel(), posterior=Posterior(np.array([6.0, 0.0]), np.eye(2) * 0.01), policy="rules"
    )
    assert far.bounds.trust_region["outside"] and far.bounds.trust_region["projected_shift"] > 1.0
    assert "pulled back" in far.bounds.trust_region["says"]
    plain = explain_person(LineModel(), "ann", answers=answers)
    assert plain.bounds.policy is None and plain.bounds.answers == [] and "no policy" in plain.bounds.summary


def test_monitor_findings_in_plain_words():
    assert monitor_notes(None)[0].flag is None
    drift = {"accuracy_old": 0.9, "accuracy_recent": 0.5, "flag_drift": True, "flag": True}
    note = monitor_notes({"lock_in": drift})[0]
    assert note.flag is True and "90%" in note.says and "moved" in note.says
    calm = {"accuracy_old": 0.8, "accuracy_recent": 0.8, "confidence_recent": 0.7, "flag": False}
    assert "no sign of lock-in" in monitor_notes({"lock_in": calm})[0].says
    bubble = monitor_notes({"filter_bubble": {"entropy_ratio": 0.2, "threshold": 0.5, "flag": True}})[1]
    assert bubble.name == "filter_bubble" and bubble.flag and "narrower" in bubble.says


def test_read_texts_formats_and_errors(tmp_path: Path):
    (tmp_path / "a.jsonl").write_text('{"text": "one", "prompt": "p"}\n\n"two"\n{"response": "three"}\n')
    assert read_texts(tmp_path / "a.jsonl") == (["p", "", ""], ["one", "two", "three"])
    (tmp_path / "a.txt").write_text("first\n\n second \n")
    assert read_texts(tmp_path / "a.txt") == (["", ""], ["first", "second"])
    (tmp_path / "b.jsonl").write_text('{"text": "ok"}\n{"text": ""}\n')
    with pytest.raises(DataError, match=r"b\.jsonl:2: field 'text'"):
        read_texts(tmp_path / "b.jsonl")
    (tmp_path / "c.json").write_text('{"text": "x"}')
    with pytest.raises(DataError, match="a JSON list"):
        read_texts(tmp_path / "c.json")


# ------------------------------------------------------------------------------------------ CLI = service
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return train_small_model(tmp_path_factory.mktemp("explain") / "m", rank=3, seed=0)


@pytest.fixture(scope="module")
def client(model_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("explain-db") / "s.db"
    with TestClient(
        create_app(ServeConfig(model_dir=str(model_dir), db_url=str(db), admin_keys=["adm"]))
    ) as c:
        yield c


def _cli_json(capsys, model_dir: Path, user: str, *extra: str) -> dict:
    assert run_guarded(app, ["explain", "--model", str(model_dir), "--user", user, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_model_keeps_reference_items_from_its_training_data(model_dir):
    m = load_model(model_dir)
    ref = m.reference_items_
    assert 0 < len(ref["text"]) <= 200 and len(ref["prompt"]) == len(ref["text"])
    assert len(set(zip(ref["prompt"], ref["text"], strict=True))) == len(ref["text"])


def test_cli_and_profile_endpoint_say_the_same_for_a_trained_person(model_dir, client, capsys):
    m = load_model(model_dir)
    person = sorted(m.user_units_)[1]
    cli = _cli_json(capsys, model_dir, person)
    r = client.get(f"/v1/persons/{person}", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["explanation"] == cli
    assert cli["source"] == "trained" and cli["n_training_judgments"] == m.train_counts_[person] > 0
    assert cli["reference"]["source"] == "training items" and len(cli["directions"]) == 3
    z = np.array([d["position"] for d in cli["directions"]])
    assert np.abs(z).max() > 0.1  # a trained person is not placed at the average
    # the unknown person: the prior in both, with the CLI warning on stderr
    unknown = _cli_json(capsys, model_dir, "nobody-here")
    assert client.get("/v1/persons/nobody-here", headers=ADMIN).json()["explanation"] == unknown
    assert unknown["source"] == "prior" and all(d["position"] == 0.0 for d in unknown["directions"])


def test_feedback_moves_the_explanation_the_endpoint_serves(model_dir, client, capsys):
    m = load_model(model_dir)
    person = sorted(m.user_units_)[2]
    before = client.get(f"/v1/persons/{person}", headers=ADMIN).json()["explanation"]
    ref = m.reference_items_
    body = {
        "kind": "comparison",
        "prompt": ref["prompt"][0],
        "chosen": ref["text"][0],
        "rejected": ref["text"][1],
    }
    assert client.post(f"/v1/persons/{person}/feedback", headers=ADMIN, json=body).status_code == 200
    after = client.get(f"/v1/persons/{person}", headers=ADMIN).json()["explanation"]
    assert after["source"] == "feedback" and after["n_feedback_judgments"] == 1
    assert "1 judgment you gave the service, folded onto what the model learned" in after["provenance"]
    assert [d["position"] for d in after["directions"]] != [d["position"] for d in before["directions"]]


def test_cli_prints_rich_and_fails_with_one_line(model_dir, tmp_path, capsys):
    person = sorted(load_model(model_dir).user_units_)[0]
    assert (
        run_guarded(app, ["explain", "--model", str(model_dir), "--user", person, "--policy", "rules"]) == 0
    )
    out = capsys.readouterr().out
    assert "personal directions" in out and "trust region" in out and "lock_in" in out
    assert run_guarded(app, ["explain", "--model", str(model_dir), "--user", "ghost"]) == 0
    assert "warning: the model does not know 'ghost'" in capsys.readouterr().err
    (tmp_path / "t.jsonl").write_text('{"text": 3}\n')
    for args in (
        ["--model", str(tmp_path / "none")],
        ["--model", str(model_dir), "--texts", str(tmp_path / "t.jsonl")],
    ):
        assert run_guarded(app, ["explain", *args, "--user", person]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:")
    texts = tmp_path / "mine.txt"
    texts.write_text("A short one.\nA much longer answer with many more words in it than the first.\nOk!\n")
    got = _cli_json(capsys, model_dir, person, "--texts", str(texts))
    assert got["reference"] == {"source": "given", "n": 3}


def test_with_a_policy_the_profile_shows_the_bounds_on_the_judged_pairs(model_dir, tmp_path, capsys):
    m = load_model(model_dir)
    person, other = sorted(m.user_units_)[3:5]
    cfg = ServeConfig(
        model_dir=str(model_dir), db_url=str(tmp_path / "p.db"), admin_keys=["adm"], policy="rules"
    )
    with TestClient(create_app(cfg)) as c:
        # before any feedback: the same as the CLI with the same policy, trust region included
        cli = _cli_json(capsys, model_dir, other, "--policy", "rules")
        assert c.get(f"/v1/persons/{other}", headers=ADMIN).json()["explanation"] == cli
        assert cli["bounds"]["trust_region"]["rho"] == 2.0 and cli["bounds"]["answers"] == []
        rude, polite = "Only an idiot asks this, look it up.", "A fine question: here is how to do it."
        body = {"kind": "comparison", "prompt": "how?", "chosen": rude, "rejected": polite}
        assert c.post(f"/v1/persons/{person}/feedback", headers=ADMIN, json=body).status_code == 200
        got = c.get(f"/v1/persons/{person}", headers=ADMIN).json()["explanation"]
    (answer,) = got["bounds"]["answers"]
    assert answer["prompt"] == "how?" and answer["served"] == polite and answer["preferred"] in (rude, polite)
    blocked = answer["preferred"] == rude
    assert answer["changed"] is blocked and answer["constraint"] == ("no_insults" if blocked else None)
    assert got["bounds"]["summary"].startswith("policy rules: the bounds changed")


def test_a_missing_descriptor_library_is_skipped_not_fatal(monkeypatch):
    import builtins

    from personalign.features import descriptors

    real_import = builtins.__import__

    def no_textstat(name, *args, **kw):
        if name.startswith("textstat"):
            raise ImportError("no textstat here")
        return real_import(name, *args, **kw)

    descriptors._library_scorers.cache_clear()
    descriptors._describe_one.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_textstat)
    try:
        assert "reading_ease" not in descriptors.available_descriptors()
        table = descriptors.text_descriptors(["Fine words here.", "More words in this one!"])
        assert "reading_ease" not in table.columns and list(table["words"]) == [3, 5]
        assert explain_person(LineModel(), "ann", texts=TEXTS).directions[0].high_end.startswith("longer")
    finally:
        monkeypatch.undo()
        descriptors._library_scorers.cache_clear()
        descriptors._describe_one.cache_clear()
    assert "reading_ease" in descriptors.available_descriptors() or "textstat" not in sys.modules
