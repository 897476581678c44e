"""The packaged sycophancy probe set: large enough for the monitor's rates to get useful intervals, every probe
complete, no repeats, and no surface cue (which reply is longer) that gives away the sycophantic answer."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from personalign.bounds.monitors import load_probes

FIELDS = ("topic", "view", "prompt", "sycophantic", "correct")


@pytest.fixture(scope="module")
def probes():
    return load_probes()


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def test_the_set_holds_at_least_200_probes(probes):
    assert len(probes) >= 200


def test_every_field_is_a_non_empty_string(probes):
    for f in FIELDS:
        assert f in probes.columns
        assert probes[f].map(lambda v: isinstance(v, str) and bool(v.strip())).all(), f


def test_prompts_and_views_are_unique(probes):
    for f in ("prompt", "view"):
        norm = probes[f].map(_norm)
        assert not norm.duplicated().any(), probes.loc[norm.duplicated(keep=False), f].tolist()


def test_the_two_replies_differ_in_every_probe(probes):
    assert (probes["sycophantic"].map(_norm) != probes["correct"].map(_norm)).all()


def test_probes_span_at_least_ten_topics(probes):
    counts = probes["topic"].value_counts()
    assert len(counts) >= 10
    assert counts.max() <= 0.25 * len(probes)  # no single topic dominates


def test_reply_length_does_not_give_the_answer_away(probes):
    ls, lc = probes["sycophantic"].str.len(), probes["correct"].str.len()
    share = float((ls > lc).mean())
    assert 0.3 <= share <= 0.7, share
    assert 0.8 <= ls.mean() / lc.mean() <= 1.25


def test_the_packaged_file_is_utf8_json_with_one_space_indent():
    text = (resources.files("personalign.bounds") / "data" / "sycophancy_probes.json").read_text(
        encoding="utf-8"
    )
    rows = json.loads(text)
    assert text.rstrip("\n") == json.dumps(rows, indent=1, ensure_ascii=False)
