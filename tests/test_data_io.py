"""Readers and writers: round trips through Parquet/JSONL/CSV, generic tables, TRL, Hugging Face, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from personalign import ConfigError, DataError
from personalign.data import (
    POPULATION_USER,
    PreferenceData,
    from_hf_dataset,
    read_data,
    to_hf_dataset,
    write_data,
)
from personalign.data.adapters import detect_format
from personalign.data.io import atomic_write, read_csv, read_jsonl

TABLES = ("comparisons", "ratings", "rankings", "votes", "users", "items")


def _mixed() -> PreferenceData:
    """All four kinds, users with typed demographics (a nullable int among them), items with metadata."""
    return PreferenceData(
        comparisons=pd.DataFrame(
            {
                "user_id": ["u1", "u2", "u1"],
                "prompt": ["p", "p", ""],
                "chosen": ["a", "b", "é ✓ unicode"],
                "rejected": ["b", "a", "x"],
                "tie": [False, False, True],
                "weight": [1.0, 2.0, 0.5],
                "confidence": [3, 7, 9],
            }
        ),
        ratings=pd.DataFrame(
            {"user_id": ["u1", "u3"], "prompt": ["q", "q"], "response": ["r1", "r2"], "rating": [1.0, 5.0]}
        ),
        rankings=pd.DataFrame({"user_id": ["u2"], "prompt": ["z"], "responses": [["best", "mid", "worst"]]}),
        votes=pd.DataFrame(
            {"user_id": ["u1", "u2", "u3"], "prompt": "t", "response": ["s1", "s1", "s2"], "vote": [1, -1, 0]}
        ),
        users=pd.DataFrame(
            {
                "user_id": ["u1", "u2", "u3"],
                "age": [31, 45, 28],
                "group": pd.array([1, None, 2], dtype="Int64"),
                "gender": ["f", "m", None],
            }
        ),
        items=pd.DataFrame({"item_id": ["extra"], "prompt": [""], "text": ["unjudged item"], "age": ["old"]}),
        rating_scale=(1.0, 5.0),
        name="mixed",
        meta={"source": "test", "n": 3},
    )


def _assert_same(a: PreferenceData, b: PreferenceData, *, dtypes: bool) -> None:
    for t in TABLES:
        x, y = getattr(a, t), getattr(b, t)
        assert list(x.columns) == list(y.columns), t
        if not dtypes:  # text formats: a missing value may come back as None or NaN
            x, y = (f.astype(object).where(f.notna(), None) for f in (x, y))
        pd.testing.assert_frame_equal(x, y, check_dtype=dtypes, obj=t)
    assert a.rating_scale == b.rating_scale
    assert a.name == b.name
    assert a.meta == b.meta


def test_parquet_round_trip_is_lossless(tmp_path):
    data = _mixed()
    out = write_data(data, tmp_path / "d.parquet")
    back = read_data(out)
    for t in ("users", "items", "comparisons", "votes"):
        pd.testing.assert_frame_equal(getattr(data, t), getattr(back, t), check_dtype=False, obj=t)
    # types survive: ints stay ints, the nullable int keeps its missing value, lists stay lists
    assert back.users["age"].tolist() == [31, 45, 28] and pd.api.types.is_integer_dtype(back.users["age"])
    assert back.users["group"].isna().tolist() == [False, True, False]
    assert back.rankings["responses"].iloc[0] == ["best", "mid", "worst"]
    assert back.comparisons["tie"].tolist() == [False, False, True]
    assert back.comparisons["confidence"].tolist() == [3, 7, 9]
    _assert_same(data, back, dtypes=False)


def test_parquet_name_clash_is_namespaced_and_mixed_objects_stored_as_json(tmp_path):
    import pyarrow.parquet as pq

    data = _mixed()  # users.age is an int, items.age a string
    # a dict beside strings: Arrow cannot type the column, so it is stored as JSON text and decoded back
    data.items["info"] = [{"k": [1, 2]} if i == 0 else f"note {i}" for i in range(len(data.items))]
    path = write_data(data, tmp_path / "d.parquet")
    names = pq.read_schema(path).names
    assert "users.age" in names and "items.age" in names and "age" not in names
    back = read_data(path)
    assert back.users["age"].tolist() == [31, 45, 28]
    assert back.items.loc[back.items["item_id"] == "extra", "age"].tolist() == ["old"]
    assert back.items["info"].tolist() == data.items["info"].tolist()


@pytest.mark.parametrize("ext", ["jsonl", "jsonl.gz", "csv"])
def test_text_formats_round_trip(tmp_path, ext):
    data = _mixed()
    back = read_data(write_data(data, tmp_path / f"d.{ext}"))
    for t in TABLES:
        assert len(getattr(back, t)) == len(getattr(data, t)), t
    assert back.rating_scale == (1.0, 5.0) and back.name == "mixed" and back.meta == data.meta
    assert back.rankings["responses"].iloc[0] == ["best", "mid", "worst"]
    assert back.comparisons["chosen"].tolist() == data.comparisons["chosen"].tolist()
    assert back.votes["vote"].tolist() == [1, -1, 0]
    assert set(back.users["user_id"]) == {"u1", "u2", "u3"}
    if ext != "csv":  # JSON keeps types; CSV is text and re-infers them
        _assert_same(data, back, dtypes=False)


def test_generic_jsonl_kinds_are_inferred(tmp_path):
    rows = {
        "comparisons": {"user_id": "u", "prompt": "p", "chosen": "a", "rejected": "b"},
        "ratings": {"user_id": "u", "prompt": "p", "response": "a", "rating": 4},
        "rankings": {"user_id": "u", "prompt": "p", "responses": ["a", "b", "c"]},
        "votes": {"user_id": "u", "response": "a", "vote": "agree"},
    }
    for kind, rec in rows.items():
        f = tmp_path / f"{kind}.jsonl"
        f.write_text(json.dumps(rec) + "\n")
        d = read_data(f)
        assert d.counts()[kind] == 1
        assert sum(d.counts().values()) == 1
    assert read_data(tmp_path / "votes.jsonl").votes["vote"].tolist() == [1]


def test_user_col_and_column_map(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("rater,question,answer,score,age\nr1,q,ans1,2,30\nr1,q,ans2,5,30\nr2,q,ans1,4,50\n")
    d = read_data(
        f,
        user_col="rater",
        column_map={"question": "prompt", "answer": "response", "score": "rating"},
        user_columns=["age"],
        rating_scale=(1, 5),
    )
    assert d.counts()["ratings"] == 3
    assert d.user_ids == ["r1", "r2"]
    assert d.users.set_index("user_id")["age"].to_dict() == {"r1": 30, "r2": 50}
    assert d.rating_scale == (1, 5)
    # the canonical name wins once mapped: to_comparisons sees the person's two answers
    pairs = d.to_comparisons()
    assert pairs[["chosen", "rejected"]].values.tolist() == [["ans2", "ans1"]]
    with pytest.raises(DataError, match="person column 'nobody'"):
        read_data(f, user_col="nobody", column_map={"answer": "response", "score": "rating"})


def test_csv_empty_cells_are_empty_texts_and_ids_stay_strings(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("user_id,prompt,chosen,rejected\n007,,a,b\n12,NA,None,b\n")
    d = read_csv(f)
    assert d.comparisons["user_id"].tolist() == ["007", "12"]  # leading zeros kept
    assert d.comparisons["prompt"].tolist() == ["", "NA"]  # "NA" is text, an empty cell an empty prompt
    assert d.comparisons["chosen"].tolist() == ["a", "None"]


def test_trl_files_with_person_column_and_population_default(tmp_path):
    f = tmp_path / "trl.jsonl"
    f.write_text(
        json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "annotator": "p7"})
        + "\n"
        + json.dumps({"prompt": "q", "chosen": "c", "rejected": "a", "annotator": "p8"})
        + "\n"
    )
    d = read_data(f, "trl", user_col="annotator")
    assert d.comparisons["user_id"].tolist() == ["p7", "p8"]
    pop = read_data(f, "trl")
    assert set(pop.comparisons["user_id"]) == {POPULATION_USER} and pop.n_users == 0
    # generic jsonl insists on a person column (population data must be asked for with --format trl)
    with pytest.raises(DataError, match="user_id"):
        read_jsonl(f)


def test_trl_conversational_and_unpaired(tmp_path):
    import datasets

    conv = datasets.Dataset.from_list(
        [
            {
                "chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}],
            }
        ]
    )
    d = from_hf_dataset(conv)
    row = d.comparisons.iloc[0]
    assert (row["prompt"], row["chosen"], row["rejected"]) == (
        "hi",
        "hello",
        "go away",
    )  # implicit prompt split
    f = tmp_path / "kto.jsonl"
    f.write_text(
        "\n".join(
            json.dumps({"prompt": "q", "completion": c, "label": lab})
            for c, lab in [("good", True), ("bad", False)]
        )
        + "\n"
    )
    k = read_data(f, "trl")
    assert k.ratings["rating"].tolist() == [1.0, 0.0] and k.rating_scale == (0.0, 1.0)


def test_hf_dataset_round_trip_and_save_to_disk(tmp_path):
    data = _mixed()
    ds = to_hf_dataset(data, "comparisons")
    assert ds.num_rows == 3 and {"user_id", "prompt", "chosen", "rejected"} <= set(ds.column_names)
    back = from_hf_dataset(ds)
    pd.testing.assert_frame_equal(
        back.comparisons[["user_id", "prompt", "chosen", "rejected", "tie", "weight"]],
        data.comparisons[["user_id", "prompt", "chosen", "rejected", "tie", "weight"]],
    )
    with pytest.raises(ConfigError, match="name one"):
        to_hf_dataset(data)  # several kinds: ambiguous
    ds.save_to_disk(str(tmp_path / "saved"))
    assert detect_format(tmp_path / "saved") == "hf"
    assert read_data(tmp_path / "saved").comparisons["chosen"].tolist() == ["a", "b", "é ✓ unicode"]


def test_atomic_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    target = tmp_path / "out.parquet"
    write_data(_mixed(), target)
    before = target.read_bytes()

    def boom(table, where, **kw):
        Path(where).write_bytes(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        write_data(_mixed(), target)
    assert target.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]  # no temp file left
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "new.json") as tmp:
        tmp.write_text("{")
        raise RuntimeError("stop")
    assert not (tmp_path / "new.json").exists()


def test_write_rejects_unknown_extension_and_options(tmp_path):
    with pytest.raises(ConfigError, match=".parquet"):
        write_data(_mixed(), tmp_path / "x.xlsx")
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"user_id": "u", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(ConfigError, match="unknown format"):
        read_data(f, "nope")
    with pytest.raises(ConfigError, match="does not take"):
        read_data(f, "hh-rlhf", user_col="x")
    with pytest.raises(FileNotFoundError):
        read_data(tmp_path / "missing.jsonl")


def test_detect_format_by_name_and_content(tmp_path):
    cases = {
        "a.jsonl": json.dumps({"user_id": "u", "chosen": "a", "rejected": "b", "prompt": ""}),
        "b.jsonl": json.dumps(
            {"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: hi\n\nAssistant: b"}
        ),
        "c.jsonl": json.dumps({"info": {}, "summaries": [], "choice": 0, "worker": "w"}),
        "d.jsonl": json.dumps({"prompt": "", "chosen": "a", "rejected": "b"}),
        "e.csv": "instance_id,user_id,text,offensiveness,gender\n",
        "f.csv": "workerId,comment,answer,race\n",
        "g.csv": "user_id,response,rating\n",
    }
    want = {
        "a.jsonl": "jsonl",
        "b.jsonl": "hh-rlhf",
        "c.jsonl": "summarize-feedback",
        "d.jsonl": "jsonl",
        "e.csv": "popquorn",
        "f.csv": "toxicity",
        "g.csv": "csv",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text + "\n")
        assert detect_format(tmp_path / name) == want[name], name
    pq_path = write_data(_mixed(), tmp_path / "h.parquet")
    assert detect_format(pq_path) == "parquet"
    with pytest.raises(DataError, match="format"):
        detect_format(tmp_path / "x.unknown")


def test_generic_parquet_table_reads_as_judgments(tmp_path):
    df = pd.DataFrame({"who": ["a", "b"], "response": ["x", "y"], "rating": np.array([1, 2])})
    df.to_parquet(tmp_path / "plain.parquet")
    d = read_data(tmp_path / "plain.parquet", user_col="who")
    assert d.counts()["ratings"] == 2 and d.user_ids == ["a", "b"]


# ------------------------------------------------------------------------------------ synthetic as a source
def test_synthetic_folder_and_spec_read_like_any_format(tmp_path):
    from personalign.data.adapters.synthetic import parse_synthetic_spec
    from personalign.data.synthetic import generate_population, sample_comparisons, write_population

    pop = generate_population(persons=12, comparisons_per_person=4, seed=5)
    write_population(pop, tmp_path / "pop", sample_comparisons(pop, 3, prompts="heldout", seed=6))
    assert detect_format(tmp_path / "pop") == "synthetic"
    d = read_data(tmp_path / "pop")
    assert list(d.meta["truth"].user_ids) == list(pop.meta["truth"].user_ids)
    assert d.comparisons[["user_id", "chosen", "rejected"]].equals(
        pop.comparisons[["user_id", "chosen", "rejected"]]
    )
    assert len(read_data(tmp_path / "pop", "synthetic", split="heldout").comparisons) == 12 * 3
    spec = "synthetic:persons=12,comparisons_per_person=4,seed=5,demographics=false"
    s = read_data(spec)
    assert s.name == "synthetic-persons=12,comparisons_per_person=4,seed=5,demographics=False"
    assert s.n_users == 12 and s.demographic_columns == [] and s.meta["truth"] is not None
    assert parse_synthetic_spec("synthetic:n_prompts=None,alpha=1") == {"n_prompts": None, "alpha": 1.0}
    for bad, field in (
        ("synthetic:alpha=abc", "alpha"),
        ("synthetic:nope=1", "nope"),
        ("synthetic:persons", "persons"),
    ):
        with pytest.raises(DataError) as ei:
            read_data(bad)
        assert ei.value.field == field, bad
