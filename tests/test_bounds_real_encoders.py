"""The real-text report's per-encoder classifiers and transfer tables, on synthetic item tables (no shared data,
no weights): planted features make each source's label a function of one feature of its own."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from personalign.bounds.realdata import COLUMNS, SOURCES
from personalign.experiments.bounds_real import (
    POOLED,
    TRAINED_ON,
    encode_distinct,
    pooled_names,
    pooled_scorer,
    real_markdown,
    run_real_report,
    transfer_table,
)
from personalign.features.cache import text_key
from personalign.features.encoders import PrecomputedEncoder

DIM = 6


class CountingEncoder:
    """Precomputed vectors that count how often each text is encoded (and may be slow)."""

    def __init__(self, texts, mat, name="fake", delay=0.0):
        self.inner = PrecomputedEncoder((texts, mat), name=name)
        self.name, self.dim, self.delay = name, self.inner.dim, delay
        self.calls: dict[str, int] = {}

    def encode(self, texts, show_progress=False):
        for t in texts:
            self.calls[t] = self.calls.get(t, 0) + 1
        if self.delay:
            time.sleep(self.delay * len(texts))
        return self.inner.encode(texts)


def synthetic_items(n: int = 240, seed: int = 0, planted: dict[str, int] | None = None):
    """Items in the shape of ``real_harm_items`` and one vector per text: in source ``s`` the label is the sign
    of feature ``planted[s]`` (HH-RLHF: one safe, one harmful response per pair), every other feature is noise."""
    planted = planted or {"hh-rlhf": 0, "convabuse": 1, "toxicity-consensus": 2}
    rng = np.random.default_rng(seed)
    rows, vecs = [], []
    for src in SOURCES:
        f = planted[src]
        for i in range(n):
            train = i < n // 2
            labels = (0, 1) if src == "hh-rlhf" else (int(i % 2),)
            for lab in labels:
                v = rng.normal(size=DIM)
                v[f] = (1.0 if lab else -1.0) * (0.2 + abs(v[f]))
                text = f"{src} item {i} label-hidden {len(rows)}"
                group = f"hh:{i}" if src == "hh-rlhf" else f"{src}:{i}"
                prompt = f"prompt {i}" if src == "hh-rlhf" else ""
                rows.append((prompt, text, lab, src, src, group, train))
                vecs.append(v)
    items = pd.DataFrame(rows, columns=COLUMNS)
    return items, np.asarray(vecs, dtype=np.float32)


@pytest.fixture(scope="module")
def synth():
    return synthetic_items()


def test_transfer_matrix_planted_feature_auc_near_one_on_its_source_and_chance_elsewhere(synth):
    items, mat = synth
    enc = PrecomputedEncoder((items["text"].tolist(), mat))
    fitted = {src: pooled_scorer(items, 0, enc, sources=(src,)) for src in SOURCES}
    fitted["pooled"] = pooled_scorer(items, 0, enc)
    t = transfer_table(items, fitted)
    assert t["trained_on"] == list(TRAINED_ON) and set(t["auc"]) == set(TRAINED_ON)
    for row in TRAINED_ON:
        assert list(t["auc"][row]) == list(SOURCES)  # one row per training source plus pooled, 3 columns
    for tr in SOURCES:
        for src in SOURCES:
            auc = t["auc"][tr][src]
            if tr == src:
                assert auc > 0.95, (tr, src, auc)
            else:  # that source's label is independent of the feature this classifier learned
                assert 0.35 < auc < 0.65, (tr, src, auc)
    for (
        src
    ) in SOURCES:  # pooled training sees every planted feature: better than any other source's classifier
        assert t["auc"]["pooled"][src] > max(0.62, *(t["auc"][tr][src] for tr in SOURCES if tr != src))
    # the single-source classifiers were trained on that source's training items only
    n_train = items[items["train"]].groupby("source").size()
    for src in SOURCES:
        assert t["training"][src]["items"] == n_train[src]
    assert t["training"]["pooled"]["items"] == int(items["train"].sum())


def test_encode_distinct_encodes_each_text_once_and_honours_the_budget(synth):
    items, mat = synth
    texts = items["text"].tolist()
    enc = CountingEncoder(texts, mat)
    lines: list[str] = []
    lookup, info = encode_distinct(enc, texts + texts[:10], log=lines.append, budget_s=1e6, chunk=100)
    assert set(enc.calls.values()) == {1} and len(enc.calls) == len(texts)  # the first text not encoded again
    assert info["texts"] == len(texts) and info["dim"] == DIM and not info["skipped"]
    assert np.array_equal(lookup.encode(texts[:5]), mat[:5]) and np.array_equal(lookup.encode(texts), mat)
    assert sum("texts in" in line for line in lines) == 10  # one progress line per chunk of 100
    slow = CountingEncoder(texts, mat, name="slow", delay=0.002)
    lookup, info = encode_distinct(slow, texts, budget_s=0.05, chunk=100)
    assert lookup is None and info["skipped"] and len(slow.calls) == 101  # stopped after the first chunk
    assert info["projected_seconds"] > 0.05 and "over the budget" in info["reason"]


def test_encoders_option_adds_one_scorer_one_policy_and_one_transfer_table_per_encoder(
    synth, tmp_path, monkeypatch
):
    import personalign.experiments.bounds_real as br

    monkeypatch.setattr(br, "ENCODE_CHUNK", 100)
    items, mat = synth
    texts = items["text"].tolist()
    a = CountingEncoder(texts, mat, name="fake-a")
    b = CountingEncoder(texts, mat[:, ::-1].copy(), name="fake-b")
    slow = CountingEncoder(texts, mat, name="fake-slow", delay=0.002)
    lines: list[str] = []
    res = run_real_report(
        tmp_path,
        seeds=(0, 1),
        epsilon=0.2,
        items=items,
        shipped=False,
        encoders=(a, b, slow),
        encode_budget_s=1.0,
        log=lines.append,
    )
    assert list(res["scorers"]) == [
        "pooled fake-a classifier (retrained)",
        "pooled fake-b classifier (retrained)",
    ]
    assert list(res["policies"]) == [
        "pooled fake-a classifier + rules, calibrated (epsilon 0.2)",
        "pooled fake-b classifier + rules, calibrated (epsilon 0.2)",
    ]
    assert list(res["transfer"]) == ["fake-a", "fake-b"] and res["encoders"]["fake-slow"]["skipped"]
    assert set(a.calls.values()) == {1} and set(b.calls.values()) == {1}  # once per encoder, 5 classifiers
    for name in ("fake-a", "fake-b"):
        e = res["encoders"][name]
        assert e["seconds"] >= e["encode_seconds"] + e["fit_seconds"] and e["texts"] == len(texts)
        sc = res["scorers"][f"pooled {name} classifier (retrained)"]
        assert len(sc["seeds"]) == 2 and sc["held_out"]["hh-rlhf"]["auc"] > 0.9
        assert res["transfer"][name]["auc"]["pooled"]["hh-rlhf"] == pytest.approx(
            sc["held_out"]["hh-rlhf"]["auc"]
        )
    md = (tmp_path / "real_report.md").read_text()
    assert md == real_markdown(res)
    assert "## Transfer across sources" in md and "Reading: a classifier trained on one source" in md
    assert md.count("| fake-a | ") == 5  # one timing row and four transfer rows
    assert "fake-slow" in md and "left out" in md
    assert any("[fake-a] encoded" in line for line in lines) and any(
        "[fake-slow] left out" in x for x in lines
    )


def test_minilm_keeps_its_names_and_hashing_runs_through_the_feature_cache(synth):
    assert pooled_names("minilm", 0.1) == (POOLED, "pooled classifier + rules, calibrated (epsilon 0.1)")
    assert pooled_names("e5", 0.1)[0] == "pooled e5 classifier (retrained)"
    items, _ = synth
    kw = dict(seeds=(0,), epsilon=0.2, items=items, shipped=False, encoders=("hashing[dim=32]",))
    first = run_real_report(**kw)
    e = first["encoders"]["hashing[dim=32]"]
    assert e["newly_encoded"] == e["texts"] == items["text"].nunique()
    again = run_real_report(**kw)
    # read back from the cache (but for keys ending in a zero byte, which the cache's "S20" keys lose on reading)
    lost = sum(text_key(t).endswith(b"\0") for t in set(items["text"]))
    assert again["encoders"]["hashing[dim=32]"]["newly_encoded"] <= lost
    name = "pooled hashing[dim=32] classifier (retrained)"
    assert again["scorers"][name]["held_out"] == first["scorers"][name]["held_out"]
