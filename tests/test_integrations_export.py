"""Portable reward artifacts load and score in a fresh process that never imports personalign."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from personalign.bounds.bounded import BoundedPolicy
from personalign.bounds.policy import policy_from_dict
from personalign.data.synthetic import generate_population
from personalign.errors import ConfigError
from personalign.features import HashingEncoder, PairFeaturizer
from personalign.integrations import PersonalReward
from personalign.integrations.export import export_reward
from personalign.models import LowRankBT, make_model

PROMPT = "How do I keep basil fresh?"
CANDS = [
    "Short answer: keep it in water on the counter.",
    "Certainly. The following considerations apply. Store basil at room temperature in water.",
    "Okay, so here's the thing. Stick it in a glass of water like flowers lol.",
    "Honestly, this is a stupid question and you should be embarrassed. Put it in water.",
    "",
]

CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from reward_model import PortableReward
    table = json.load(open(sys.argv[2]))
    enc = lambda texts: np.asarray([table[t] for t in texts])
    rm = PortableReward.from_pretrained(sys.argv[1], encoder=enc)
    out = {"score": rm.score(table["__prompts__"], table["__responses__"]).tolist(),
           "personal": rm.personal(table["__prompts__"], table["__responses__"]).tolist()}
    import torch
    head = rm.torch_head()
    ex = torch.tensor(rm.encode(table["__prompts__"])); ey = torch.tensor(rm.encode(table["__responses__"]))
    out["torch"] = head(ex, ey).tolist()
    out["personalign_loaded"] = any(m.startswith("personalign") for m in sys.modules)
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def model():
    data = generate_population(persons=30, comparisons_per_person=40, seed=1)
    return LowRankBT(rank=3, featurizer=PairFeaturizer(HashingEncoder(128)), random_state=0).fit(data)


def _policy(model, rho=0.5):
    pol = policy_from_dict(
        {
            "name": "t",
            "constraints": [
                {
                    "name": "no_insults",
                    "scorer": {"type": "regex", "patterns": ["stupid"]},
                    "threshold": 0,
                    "direction": "max",
                }
            ],
            "trust_region": {"rho": rho},
        }
    )
    return BoundedPolicy(model, pol)


def _run_child(art, model, prompts, responses, tmp_path):
    enc = model.featurizer.encoder
    texts = sorted({t for t in prompts + responses if t})
    table = {t: v.tolist() for t, v in zip(texts, enc.encode(texts), strict=False)}
    table["__prompts__"], table["__responses__"] = prompts, responses
    (tmp_path / "emb.json").write_text(json.dumps(table))
    (tmp_path / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    # run from an empty folder with no path to the project's sources: personalign cannot be imported by accident
    res = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "child.py"), str(art), str(tmp_path / "emb.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_portable_bounded_reward_equals_personalign(model, tmp_path):
    policy = _policy(model)
    user = list(model.user_units_)[3]
    art = export_reward(model, tmp_path / "art", user_id=user, policy=policy)
    assert {p.name for p in art.iterdir()} == {
        "config.json",
        "reward_head.safetensors",
        "reward_model.py",
        "README.md",
    }
    src = (art / "reward_model.py").read_text()
    assert "import personalign" not in src and "from personalign" not in src
    prompts = [PROMPT] * len(CANDS) + ["Any tips for a trip to Rome?"] * 2
    responses = CANDS + CANDS[:2]
    got = _run_child(art, model, prompts, responses, tmp_path)
    assert got["personalign_loaded"] is False
    want = PersonalReward(model, policy)(user, prompts, responses)
    np.testing.assert_allclose(got["score"], want, rtol=0, atol=1e-9)
    assert got["score"][3] < min(got["score"][:3])  # the insult is ranked last by the artifact too
    # the personal head is the trust-region-projected person, not the raw one
    np.testing.assert_allclose(got["personal"], policy.personal_reward(user, prompts, responses), atol=1e-9)
    np.testing.assert_allclose(got["torch"], got["personal"], atol=1e-9)


def test_unbounded_and_population_exports(model, tmp_path):
    user = list(model.user_units_)[0]
    art = export_reward(model, tmp_path / "u", user_id=user)
    got = _run_child(art, model, [PROMPT] * 4, CANDS[:4], tmp_path)
    np.testing.assert_allclose(got["score"], model.score(user, PROMPT, CANDS[:4]), atol=1e-9)
    pop = export_reward(model, tmp_path / "pop")
    got = _run_child(pop, model, [PROMPT] * 4, CANDS[:4], tmp_path)
    np.testing.assert_allclose(
        got["score"], model.score_posterior(model.prior(), PROMPT, CANDS[:4]), atol=1e-9
    )
    assert json.loads((pop / "config.json").read_text())["subject"]["kind"] == "population"


def test_export_refuses_what_it_cannot_carry(model, tmp_path):
    pol = policy_from_dict(
        {
            "name": "t",
            "constraints": [
                {
                    "name": "custom",
                    "scorer": {"type": "callable", "target": "numpy:ones_like"},
                    "threshold": 0,
                }
            ],
        },
        allow=["numpy:ones_like"],
    )
    with pytest.raises(ConfigError, match="cannot be exported"):
        export_reward(model, tmp_path / "x", user_id="u00", policy=BoundedPolicy(model, pol))
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="not a unit"):
        export_reward(model, tmp_path / "y", group="nope")


CHILD_MODES = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from reward_model import PortableReward
    table = json.load(open(sys.argv[2]))
    enc = lambda texts: np.asarray([table[t] for t in texts])
    rm = PortableReward.from_pretrained(sys.argv[1], encoder=enc)
    P, R = table["__prompts__"], table["__responses__"]
    out = {"score": rm.score(P, R).tolist(), "personal": rm.personal(P, R).tolist()}
    import torch
    args = [torch.tensor(rm.encode(P)), torch.tensor(rm.encode(R))]
    if rm.mode == "sentences":
        args.append(torch.tensor(rm.encode_sentences(R)))
    out["torch"] = rm.torch_head()(*args).tolist()
    out["personalign_loaded"] = any(m.startswith("personalign") for m in sys.modules)
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("mode", ["auto", "response", "sentences"])
def test_every_pair_mode_exports_the_models_rewards(mode, tmp_path):
    """The artifact computes the features of each PairFeaturizer mode itself: in a fresh interpreter without
    personalign it gives the model's rewards (bounded and personal) for multi-sentence and empty responses."""
    from personalign.features.pairs import split_sentences

    data = generate_population(persons=20, comparisons_per_person=30, seed=2)
    enc = HashingEncoder(64)
    m = make_model(
        "lowrank", rank=2, featurizer=PairFeaturizer(enc, mode=mode), random_state=0, max_iter=80
    ).fit(data)
    policy = _policy(m)
    user = list(m.user_units_)[1]
    art = export_reward(m, tmp_path / "art", user_id=user, policy=policy)
    cfg = json.loads((art / "config.json").read_text())
    assert cfg["features"]["mode"] == mode and cfg["features"]["dim"] == m.featurizer.dim_out
    prompts = [PROMPT] * len(CANDS) + ["Any tips for a trip to Rome?"] * 2
    responses = CANDS + ["Go early. Book the museums! Walk a lot?", "Rome."]
    texts = set(prompts) | set(responses) | {s for r in responses if r for s in split_sentences(r)}
    texts = sorted(t for t in texts if t)
    table = {t: v.tolist() for t, v in zip(texts, enc.encode(texts), strict=True)}
    table["__prompts__"], table["__responses__"] = prompts, responses
    (tmp_path / "emb.json").write_text(json.dumps(table))
    (tmp_path / "child.py").write_text(CHILD_MODES)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "child.py"), str(art), str(tmp_path / "emb.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["personalign_loaded"] is False
    np.testing.assert_allclose(got["score"], PersonalReward(m, policy)(user, prompts, responses), atol=1e-9)
    np.testing.assert_allclose(got["personal"], policy.personal_reward(user, prompts, responses), atol=1e-9)
    np.testing.assert_allclose(got["torch"], got["personal"], atol=1e-9)
    assert len(set(np.round(got["personal"], 9))) > 3  # the rewards differ: the comparison is not vacuous


def test_export_refuses_an_unknown_pair_mode(model, tmp_path):
    from personalign.integrations.export import features_entry

    feat = PairFeaturizer(HashingEncoder(16))
    feat.mode = "bogus"  # a mode a later PairFeaturizer might add, unknown to this exporter
    with pytest.raises(ConfigError, match="cannot be exported"):
        features_entry(feat)
