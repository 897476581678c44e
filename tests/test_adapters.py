"""Adapters for public formats: small fixtures written here, and the real files in ../shared/data."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from personalign import DataError
from personalign.data import POPULATION_USER, read_data, validate
from personalign.data.adapters import detect_format
from personalign.data.adapters.hh_rlhf import split_dialogues

# ------------------------------------------------------------------------------------------- fixtures

POPQUORN_HEAD = "instance_id,user_id,text,offensiveness,gender,race,age,occupation,education\n"


def _popquorn(tmp_path, rows):
    d = tmp_path / "offensiveness"
    d.mkdir(exist_ok=True)
    (d / "raw_data.csv").write_text(POPQUORN_HEAD + "".join(rows))
    return d / "raw_data.csv"


def test_popquorn_fixture(tmp_path):
    f = _popquorn(
        tmp_path,
        [
            '1,0,"you are, frankly, awful",4.0,Man,White,35-39,Unemployed,College\n',
            "2,0,nice day,1.0,Man,White,35-39,Unemployed,College\n",
            '1,7,"you are, frankly, awful",2.0,Woman,Asian,18-24,Student,High school\n',
        ],
    )
    d = read_data(f, "popquorn")
    assert (d.n_users, len(d.items), d.counts()["ratings"]) == (2, 2, 3)
    assert d.rating_scale == (1.0, 5.0)
    assert d.demographic_columns == ["gender", "race", "age", "occupation", "education"]
    assert d.users.set_index("user_id").loc["7", "race"] == "Asian"
    assert set(d.ratings["item_id"]) == {"popquorn:1", "popquorn:2"}
    assert d.ratings.loc[d.ratings["user_id"] == "7", "response"].item() == "you are, frankly, awful"
    assert detect_format(f) == "popquorn"
    # person 0 rated the two items differently: one per-person comparison
    pairs = d.to_comparisons()
    assert pairs[["user_id", "chosen", "rejected"]].values.tolist() == [
        ["0", "you are, frankly, awful", "nice day"]
    ]


def test_popquorn_rating_out_of_scale(tmp_path):
    f = _popquorn(
        tmp_path,
        ["1,0,ok,1,Man,White,35-39,Unemployed,College\n", "2,0,ok,6,Man,White,35-39,Unemployed,College\n"],
    )
    with pytest.raises(DataError) as ei:
        read_data(f, "popquorn")
    assert ei.value.line == 3 and ei.value.field == "offensiveness" and "1 to 5" in str(ei.value)


def _toxicity(tmp_path, ann_rows, answer_ok=True):
    d = tmp_path / "tox"
    d.mkdir(exist_ok=True)
    (d / "pilot_annotations.csv").write_text(
        "workerId,comment,answer,race,age,gender,politic\n" + "".join(ann_rows)
    )
    (d / "comments.csv").write_text(
        'id,comment_id,text,pos_f,pos_m\n0,31755,"first, comment",0,0.03\n1,16800,second comment,0.5,0.08\n'
    )
    return d


def test_toxicity_fixture(tmp_path):
    d = _toxicity(
        tmp_path,
        [
            "w1,0,1,White,36,Female,Democrat\n",
            "w1,1,-1,White,36,Female,Democrat\n",
            "w2,0,-1,Black,50,Male,Republican\n",
        ],
    )
    for path in (d, d / "pilot_annotations.csv"):
        data = read_data(path)
        assert (data.n_users, data.counts()["ratings"]) == (2, 3)
        assert data.rating_scale == (0.0, 1.0)
        r = data.ratings.set_index(["user_id", "item_id"])["rating"]
        assert (
            r[("w1", "toxicity:0")] == 1.0
            and r[("w1", "toxicity:1")] == 0.0
            and r[("w2", "toxicity:0")] == 0.0
        )
        assert (
            data.ratings.loc[data.ratings["item_id"] == "toxicity:0", "response"].iloc[0] == "first, comment"
        )
        assert data.demographic_columns == ["race", "age", "gender", "politic"]
        assert data.items.set_index("item_id").loc["toxicity:1", "comment_id"] == 16800


def test_toxicity_bad_answer_and_unknown_comment(tmp_path):
    d = _toxicity(tmp_path, ["w1,0,1,White,36,Female,Democrat\n", "w1,1,0,White,36,Female,Democrat\n"])
    with pytest.raises(DataError, match=r"pilot_annotations\.csv:3: field 'answer'.*1 \(toxic\) or -1"):
        read_data(d, "toxicity")
    d = _toxicity(tmp_path, ["w1,9,1,White,36,Female,Democrat\n"])
    with pytest.raises(DataError, match="field 'comment'.*comments.csv"):
        read_data(d, "toxicity")


def _lewidi(tmp_path, ds, meta_prefix, label_field="reply", labels=("0", "1")):
    d = tmp_path / ds
    d.mkdir()
    items = {
        "10": {
            "text": {"post": "the post", label_field: "the reply"},
            "annotations": {"Ann0": labels[0], "Ann5": labels[1]},
            "soft_label": {labels[0]: 0.5, labels[1]: 0.5},
            "split": "dev",
            "lang": "en",
            "other_info": {"source": "reddit", "level": 1.0},
        },
    }
    test = {
        "11": {
            "text": {"post": "p2", label_field: "r2"},
            "annotations": {"Ann5": labels[1]},
            "soft_label": {labels[0]: 0.0, labels[1]: 1.0},
            "split": "test",
            "lang": "de",
            "other_info": {},
        }
    }
    (d / f"{ds}_dev.json").write_text(json.dumps(items))
    (d / f"{ds}_test.json").write_text(json.dumps(test))
    meta = {
        f"{meta_prefix}0": {"Age": 19.0, "Gender": "Female", "Student status": "DATA_EXPIRED"},
        f"{meta_prefix}5": {"Age": 40.0, "Gender": "nan", "Student status": "No"},
    }
    (d / f"{ds}_annotators_meta.json").write_text(json.dumps(meta))
    return d


@pytest.mark.parametrize("prefix", ["", "Ann"])  # MP keys metadata "0", CSC "Ann0": both join
def test_lewidi_fixture(tmp_path, prefix):
    d = _lewidi(tmp_path, "MP", prefix)
    data = read_data(d)
    assert (data.n_users, len(data.items), data.counts()["ratings"]) == (2, 2, 3)
    assert sorted(data.users["user_id"]) == ["Ann0", "Ann5"]
    assert validate(data).unknown_persons == []
    assert pd.isna(
        data.users.set_index("user_id").loc["Ann0", "student_status"]
    )  # Prolific's marker -> missing
    assert pd.isna(data.users.set_index("user_id").loc["Ann5", "gender"])  # a literal "nan" too
    assert data.users["age"].tolist() == [19.0, 40.0]
    it = data.items.set_index("item_id")
    assert it.loc["MP:10", "prompt"] == "the post" and it.loc["MP:10", "text"] == "the reply"
    assert it.loc["MP:11", "lang"] == "de" and it.loc["MP:10", "source"] == "reddit"
    assert data.rating_scale == (0.0, 1.0)
    one = read_data(d / "MP_dev.json")  # one file, metadata found beside it
    assert one.counts()["ratings"] == 2 and len(one.users) == 2


def test_lewidi_scale_from_soft_labels_and_bad_label(tmp_path):
    d = _lewidi(tmp_path, "CSC", "Ann", label_field="response", labels=("1", "6"))
    assert read_data(d, "lewidi").rating_scale == (1.0, 6.0)
    bad = json.loads((d / "CSC_dev.json").read_text())
    bad["10"]["annotations"]["Ann0"] = "very"
    (d / "CSC_dev.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"CSC_dev\.json: field 'annotations\.Ann0': item 10: got 'very'"):
        read_data(d, "lewidi")


def _polis(tmp_path, matrix_rows, xid=False):
    d = tmp_path / "conv.x"
    d.mkdir()
    head = "participant," + ("xid," if xid else "") + "group-id,n-comments,n-votes,n-agree,n-disagree,0,1,2\n"
    (d / "participants-votes.csv").write_text(head + "".join(matrix_rows))
    (d / "comments.csv").write_text(
        "timestamp,datetime,comment-id,author-id,agrees,disagrees,moderated,comment-body\n"
        '1,x,0,0,1,0,1,Taxes should rise\n1,x,1,0,1,0,-1,spam spam\n1,x,2,1,0,1,0,"Parks, please"\n'
    )
    (d / "summary.csv").write_text("topic,City budget\nurl,https://pol.is/x\n")
    return d


def test_polis_fixture(tmp_path):
    d = _polis(tmp_path, ["0,0,1,3,2,1,1,-1,\n", "1,,0,2,1,0,0,,1\n", "5,1,0,1,1,0,,,1\n"])
    data = read_data(d)
    assert detect_format(d) == "polis" and detect_format(d / "participants-votes.csv") == "polis"
    assert (data.n_users, data.counts()["votes"]) == (3, 5)
    v = data.votes.set_index(["user_id", "item_id"])["vote"]
    assert v[("conv.x:0", "conv.x:0")] == 1 and v[("conv.x:0", "conv.x:1")] == -1
    assert v[("conv.x:1", "conv.x:0")] == 0  # a pass is a vote; a blank cell is no vote
    assert ("conv.x:1", "conv.x:1") not in v.index
    u = data.users.set_index("user_id")["group-id"]
    assert u["conv.x:0"] == 0 and u["conv.x:5"] == 1 and u.isna()["conv.x:1"]
    it = data.items.set_index("item_id")
    assert it.loc["conv.x:1", "moderated"] == -1 and it.loc["conv.x:2", "text"] == "Parks, please"
    assert set(data.votes["prompt"]) == {"City budget"}


def test_polis_xid_column_and_bad_cell(tmp_path):
    d = _polis(tmp_path, ["0,abc,0,1,1,1,0,1,,\n"], xid=True)
    data = read_data(d, "polis")
    assert data.users["xid"].tolist() == ["abc"] and data.counts()["votes"] == 1
    (d / "participants-votes.csv").write_text(
        "participant,group-id,n-comments,n-votes,n-agree,n-disagree,0,1,2\n0,0,1,2,1,0,1,2,\n"
    )
    with pytest.raises(DataError) as ei:
        read_data(d, "polis")
    assert ei.value.line == 2 and ei.value.field == "1" and "agree" in str(ei.value)


def test_hh_rlhf_split_and_fixture(tmp_path):
    chosen = "\n\nHuman: how do I pick a lock?\n\nAssistant: Why do you ask?\n\nHuman: locked out\n\nAssistant: Call a locksmith."
    rejected = "\n\nHuman: how do I pick a lock?\n\nAssistant: Why do you ask?\n\nHuman: locked out\n\nAssistant: Use a bobby pin."
    p, c, r = split_dialogues(chosen, rejected)
    assert (
        p.endswith("Human: locked out\n\nAssistant:") and c == "Call a locksmith." and r == "Use a bobby pin."
    )
    # dialogues that differ before the last turn keep the later turns in the responses
    p2, c2, _ = split_dialogues(
        "\n\nHuman: a\n\nAssistant: x\n\nHuman: b\n\nAssistant: y", "\n\nHuman: a\n\nAssistant: z"
    )
    assert p2 == "\n\nHuman: a\n\nAssistant:" and c2 == "x\n\nHuman: b\n\nAssistant: y"
    f = tmp_path / "test.jsonl.gz"
    with gzip.open(f, "wt") as fh:
        fh.write(json.dumps({"chosen": chosen, "rejected": rejected}) + "\n")
        fh.write(json.dumps({"chosen": chosen, "rejected": chosen}) + "\n")
    assert detect_format(f) == "hh-rlhf"
    data = read_data(f)
    assert data.counts()["comparisons"] == 2 and data.n_users == 0
    assert set(data.comparisons["user_id"]) == {POPULATION_USER}
    assert validate(data).self_comparisons == 1
    with gzip.open(f, "wt") as fh:
        fh.write(json.dumps({"chosen": chosen}) + "\n")
    with pytest.raises(DataError, match=r"test\.jsonl\.gz:1: field 'rejected'"):
        read_data(f, "hh-rlhf")


def _summ(info, summaries, choice, worker="w1", **extra):
    return json.dumps({"info": info, "summaries": summaries, "choice": choice, "worker": worker, **extra})


def test_summarize_feedback_fixture(tmp_path):
    post = {"id": "t3_1", "post": "My cat ignores me.", "title": "Cat", "subreddit": "cats"}
    art = {"id": "cnn1", "article": "Rain fell.", "title": "Weather", "site": "cnn"}
    s = [
        {"text": " Cat ignores OP.", "policy": "sup2", "note": None},
        {"text": "A cat.", "policy": "ref", "note": None},
    ]
    three = [*s, {"text": "Third.", "policy": "pretrain", "note": "meh"}]
    f = tmp_path / "batch1.json"
    f.write_text(
        "\n".join(
            [
                _summ(post, s, 0, split="train", extra={"confidence": 8}),
                _summ(art, three, 2, worker="w2"),
            ]
        )
        + "\n"
    )
    data = read_data(f, "summarize-feedback")
    c = data.comparisons
    assert len(c) == 3 and data.user_ids == ["w1", "w2"]  # a choice among three gives two pairs
    first = c.iloc[0]
    assert first["prompt"] == "SUBREDDIT: r/cats\nTITLE: Cat\nPOST: My cat ignores me."
    assert (first["chosen"], first["rejected"]) == ("Cat ignores OP.", "A cat.")
    assert (first["chosen_policy"], first["rejected_policy"], first["confidence"]) == ("sup2", "ref", 8)
    assert c.iloc[1]["prompt"].startswith("TITLE: Weather\nARTICLE: Rain fell.")
    assert set(c.iloc[1:]["chosen"]) == {"Third."} and np.isnan(c.iloc[1]["confidence"])
    g = tmp_path / "comparisons.jsonl"
    g.write_text(_summ(post, s, 0) + "\n")
    assert detect_format(g) == "summarize-feedback"


@pytest.mark.parametrize(
    ("record", "field", "expected"),
    [
        (lambda p, s: _summ(p, s, 2), "choice", "an index from 0 to 1"),
        (lambda p, s: _summ(p, s, "first"), "choice", "integer index"),
        (lambda p, s: _summ(p, s[:1], 0), "summaries", "at least two"),
        (lambda p, s: _summ(None, s, 0), "info", "post/title"),
        (lambda p, s: _summ(p, [s[0], {"policy": "x"}], 0), "summaries[1].text", "a string"),
        (lambda p, s: _summ(p, s, 0, worker=None), "worker", "labeller"),
    ],
)
def test_summarize_feedback_errors(tmp_path, record, field, expected):
    post = {"post": "p", "title": "t", "subreddit": "s"}
    s = [{"text": "a", "policy": "x"}, {"text": "b", "policy": "y"}]
    f = tmp_path / "c.jsonl"
    f.write_text(_summ(post, s, 1) + "\n" + record(post, s) + "\n")
    with pytest.raises(DataError) as ei:
        read_data(f, "summarize-feedback")
    assert ei.value.line == 2 and ei.value.field == field and expected in str(ei.value)


# ------------------------------------------------------------------------------------------ real data


def _demo(data):
    return data.demographic_columns


def test_real_popquorn(shared_data):
    d = read_data(shared_data / "popquorn/offensiveness/raw_data.csv", "popquorn")
    assert (d.n_users, len(d.items), d.counts()["ratings"]) == (262, 1500, 13036)
    assert _demo(d) == ["gender", "race", "age", "occupation", "education"]
    assert d.users[_demo(d)].notna().all().all()
    assert validate(d).ok


def test_real_toxicity(shared_data):
    # SOURCE.txt says 13,079 labels, but the file holds 13,080 rows (no trailing newline): the data wins
    d = read_data(shared_data / "toxicity-perspective-prolific")
    assert (d.n_users, len(d.items), d.counts()["ratings"]) == (545, 120, 13080)
    assert _demo(d) == ["race", "age", "gender", "politic"]
    assert d.ratings["rating"].sum() == 8346  # answer == 1 (toxic)
    assert d.judgments_per_user().eq(24).all()


def test_real_lewidi(shared_data):
    mp = read_data(shared_data / "lewidi2025-multipico-csc/MP")
    assert (mp.n_users, len(mp.items), mp.counts()["ratings"]) == (506, 6761, 33871)
    assert mp.rating_scale == (0.0, 1.0) and mp.items["lang"].nunique() == 9
    assert "nationality" in _demo(mp) and validate(mp).unknown_persons == []
    csc = read_data(shared_data / "lewidi2025-multipico-csc/CSC")
    assert (csc.n_users, len(csc.items), csc.counts()["ratings"]) == (872, 1408, 6410)
    assert csc.rating_scale == (1.0, 6.0) and _demo(csc) == ["gender", "age"]
    assert len(validate(csc).unknown_persons) == 32  # 840 of 872 annotators have metadata


def test_real_polis_conversation(shared_data):
    d = read_data(shared_data / "polis-opendata/vtaiwan.uberx")
    assert (d.n_users, len(d.items), d.counts()["votes"]) == (1921, 197, 49443)
    assert d.votes["vote"].value_counts().to_dict() == {1: 31029, -1: 11894, 0: 6520}
    assert "group-id" in _demo(d) and (d.items["moderated"] == -1).sum() == 78


def test_real_hh_rlhf(shared_data):
    d = read_data(shared_data / "hh-rlhf-harmless-test/test.jsonl.gz")
    assert d.counts()["comparisons"] == 2312 and d.n_users == 0
    c = d.comparisons
    assert c["prompt"].str.endswith("\n\nAssistant:").all()
    assert not c["chosen"].str.contains("\n\nHuman:").any()


def test_lewidi_root_folder_asks_for_one_dataset(tmp_path):
    _lewidi(tmp_path, "MP", "")
    _lewidi(tmp_path, "CSC", "Ann", label_field="response", labels=("1", "6"))
    assert detect_format(tmp_path) == "lewidi"
    with pytest.raises(DataError, match=r"one of CSC, MP"):
        read_data(tmp_path)


# ------------------------------------------------------------------------------------------------ ConvAbuse
CONVABUSE_HEAD = (
    "example_no,annotator_id,conv_id,prev_agent,prev_user,agent,user,bot,is_abuse.1,is_abuse.0,is_abuse.-1,"
    "is_abuse.-2,is_abuse.-3,type.sexist,target.system,direction.explicit\n"
)
SEVERITY = {1: "1,0,0,0,0", 0: "0,1,0,0,0", -1: "0,0,1,0,0", -2: "0,0,0,1,0", -3: "0,0,0,0,1"}


def _convabuse(tmp_path, rows):
    """rows: (annotator, conv, prev_agent, prev_user, agent, user, upstream level, flags)."""
    d = tmp_path / "convabuse"
    d.mkdir(exist_ok=True)
    lines = [
        f'{k},{a},{c},"{pa}","{pu}","{ag}","{u}",E.L.I.Z.A.,{SEVERITY[lv]},{fl}\n'
        for k, (a, c, pa, pu, ag, u, lv, fl) in enumerate(rows)
    ]
    (d / "ConvAbuseEMNLPfull.csv").write_text(CONVABUSE_HEAD + "".join(lines))
    return d


def test_convabuse_fixture(tmp_path):
    d = _convabuse(
        tmp_path,
        [
            ("A1", "7.0", "_", "hi", "Hello, how are you?", "you are stupid", -2, "0,1,1"),
            ("A2", "7.0", "_", "hi", "Hello, how are you?", "you are stupid", 0, "0,0,0"),
            ("A1", "8.0", "Go on.", "no", "Why no?", "because", 1, "0,0,0"),
            ("A1", "7.0", "_", "hi", "Hello, how are you?", "you are stupid", -3, "1,1,1"),  # A1 again: kept
            ("A2", "_", "_", "_", "_", "_", 1, "0,0,0"),  # no utterance at all: left out, counted
        ],
    )
    assert detect_format(d) == "convabuse" and detect_format(d / "ConvAbuseEMNLPfull.csv") == "convabuse"
    data = read_data(d)
    assert data.rating_scale == (-1.0, 3.0) and data.neutral_value() == 0.0
    r = data.ratings.set_index(["user_id", "response"])
    # severity = minus the upstream level: higher = more abusive; A1's repeat replaces its first judgment
    assert (
        r.loc[("A1", "you are stupid"), "rating"] == 3.0 and r.loc[("A2", "you are stupid"), "rating"] == 0.0
    )
    assert r.loc[("A1", "because"), "rating"] == -1.0
    assert r.loc[("A1", "you are stupid"), "type.sexist"] == 1
    assert (data.n_users, len(data.items), len(data.ratings)) == (2, 2, 3)
    # the prompt is the previous turns, missing ones ("_") left out
    prompts = dict(zip(data.items["text"], data.items["prompt"]))
    assert prompts["you are stupid"] == "User: hi\nAgent: Hello, how are you?"
    assert prompts["because"] == "Agent: Go on.\nUser: no\nAgent: Why no?"
    assert data.meta["repeat_judgments"] == {"dropped": 1, "person_items": 1, "agreeing": 0, "kept": "last"}
    assert data.meta["skipped_rows"] == {"no user utterance": 1}
    findings = validate(data).findings()
    assert any("1 repeat judgments merged" in f for f in findings)
    assert "1 rows left out by the reader (no user utterance)" in findings
    assert not any("empty texts" in f for f in findings)
    # ... and said again where the data is used: its summary (eval's results.json), eval's Markdown, the audit
    from personalign.evaluate.report import markdown

    assert data.summary()["repeat_judgments_merged"] == data.meta["repeat_judgments"]
    assert (
        " 1 repeat judgments merged by the reader (the last of each of 1 person-item pairs kept"
        in markdown({"summary": data.summary()})
    )


def test_convabuse_errors(tmp_path):
    d = _convabuse(tmp_path, [("A1", "7.0", "_", "hi", "Hello", "fine", 1, "0,0,0")])
    f = d / "ConvAbuseEMNLPfull.csv"
    f.write_text(f.read_text() + "1,A2,7.0,_,hi,Hello,fine,E.L.I.Z.A.,1,1,0,0,0,0,0,0\n")
    with pytest.raises(DataError) as ei:
        read_data(d, "convabuse")
    assert ei.value.line == 3 and ei.value.field == "is_abuse" and "exactly one" in str(ei.value)
    wide = tmp_path / "ConvAbuseEMNLPtest.csv"
    wide.write_text(
        "example_id,conv_id,prev_agent,prev_user,agent,user,bot,Annotator1_is_abuse.1\n0,1,a,b,c,d,e,1\n"
    )
    assert detect_format(wide) == "convabuse"
    with pytest.raises(DataError, match="one column per annotator"):
        read_data(wide)


def test_real_convabuse(shared_data):
    d = read_data(shared_data / "convabuse", "convabuse")
    per = d.judgments_per_user()
    assert d.n_users == 8 and len(d.items) == 4184
    # 12,768 rows: 3 with no utterance ("_" everywhere), 357 repeats of a judgment the same annotator made (345
    # annotator-item pairs)
    assert d.meta["skipped_rows"] == {"no user utterance": 3}
    assert len(d.ratings) + d.meta["repeat_judgments"]["dropped"] == 12768 - 3
    assert (d.ratings["response"].str.strip() != "").all()
    assert d.meta["repeat_judgments"]["person_items"] == 345
    assert per.min() >= 1000 and per.max() <= 1789
    assert d.ratings["rating"].value_counts().to_dict().keys() == {-1.0, 0.0, 1.0, 2.0, 3.0}
    assert not d.ratings.duplicated(["user_id", "item_id"]).any()
