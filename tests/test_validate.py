"""Validation: malformed records raise DataError naming file, line/row, field and expectation; reports list
self-comparisons, duplicates, unknown persons and empty texts."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from personalign import DataError
from personalign.data import PreferenceData, read_data, validate
from personalign.data.validate import check_frame


def _jsonl(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


GOOD = {"user_id": "u1", "prompt": "p", "chosen": "a", "rejected": "b"}


@pytest.mark.parametrize(
    ("bad", "line", "field", "expected"),
    [
        ('{"user_id": "u2", "chosen": "a"', 3, None, "one JSON object per line"),  # broken JSON
        ("[1, 2]", 3, None, "one JSON object per line"),  # not an object
        ({"user_id": "u2", "prompt": "p", "chosen": "a"}, 3, "rejected", "a string"),  # missing field
        (
            {"user_id": "u2", "prompt": "p", "chosen": 5, "rejected": "b"},
            3,
            "chosen",
            "a string",
        ),  # wrong type
        (
            {"user_id": "", "prompt": "p", "chosen": "a", "rejected": "b"},
            3,
            "user_id",
            "a non-empty person id",
        ),
        ({"user_id": "u2", "prompt": ["x"], "chosen": "a", "rejected": "b"}, 3, "prompt", "a string"),
        ({"user_id": "u2", "chosen": "a", "rejected": "b", "weight": -1}, 3, "weight", "non-negative"),
        ({"user_id": "u2", "chosen": "a", "rejected": "b", "tie": "maybe"}, 3, "tie", "boolean"),
    ],
)
def test_broken_jsonl_record_names_file_line_field(tmp_path, bad, line, field, expected):
    f = _jsonl(tmp_path / "d.jsonl", [GOOD, "", bad, GOOD])  # line 2 is blank: lines are physical lines
    with pytest.raises(DataError) as ei:
        read_data(f)
    err = ei.value
    assert err.file == str(f) and err.line == line
    assert f"{f}:{line}" in str(err)
    if field:
        assert err.field == field and f"field '{field}'" in str(err)
    assert expected in str(err)


def test_rating_outside_scale_and_non_numeric(tmp_path):
    f = _jsonl(
        tmp_path / "r.jsonl",
        [{"user_id": "u", "response": "x", "rating": 3}, {"user_id": "u", "response": "y", "rating": 7}],
    )
    with pytest.raises(
        DataError, match=r"r\.jsonl:2: field 'rating': got 7 \(expected a rating within the scale"
    ):
        read_data(f, rating_scale=(1, 5))
    assert read_data(f).rating_scale == (3.0, 7.0)  # without a declared scale the data's range is the scale
    g = _jsonl(tmp_path / "s.jsonl", [{"user_id": "u", "response": "x", "rating": "high"}])
    with pytest.raises(DataError, match="field 'rating': got 'high'"):
        read_data(g)


def test_vote_must_be_minus_one_zero_or_one(tmp_path):
    f = _jsonl(tmp_path / "v.jsonl", [{"user_id": "u", "response": "s", "vote": v} for v in (1, "pass", 2)])
    with pytest.raises(DataError) as ei:
        read_data(f)
    assert ei.value.line == 3 and ei.value.field == "vote" and "{-1, 0, 1}" in str(ei.value)


def test_ranking_needs_a_list_of_two_or_more(tmp_path):
    f = _jsonl(
        tmp_path / "k.jsonl",
        [{"user_id": "u", "responses": ["a", "b"]}, {"user_id": "u", "responses": ["a"]}],
    )
    with pytest.raises(DataError, match=r"k\.jsonl:2: field 'responses'"):
        read_data(f)


def test_csv_errors_report_the_physical_line(tmp_path):
    # a quoted text spanning two lines pushes the bad record to line 5
    f = tmp_path / "d.csv"
    f.write_text('user_id,response,rating\nu1,"two\nlines",1\nu2,ok,2\nu3,bad,x\n')
    with pytest.raises(DataError) as ei:
        read_data(f)
    assert ei.value.line == 5 and ei.value.field == "rating"
    g = tmp_path / "e.csv"
    g.write_text("user_id,response,rating\nu1,a,1\nu2,b,2,extra\n")
    with pytest.raises(DataError) as ei:
        read_data(g)
    assert ei.value.line == 3 and "malformed CSV" in str(ei.value)


def test_check_frame_on_tables_names_rows():
    df = pd.DataFrame({"user_id": ["a", "b", None], "response": ["x", "y", "z"], "rating": [1, 2, 3]})
    with pytest.raises(DataError) as ei:
        check_frame(df, "ratings", source="table")
    assert ei.value.row == 2 and ei.value.field == "user_id" and "table: row 2" in str(ei.value)


def test_unknown_kind_column_value(tmp_path):
    f = _jsonl(
        tmp_path / "l.jsonl",
        [
            {"kind": "ratings", "user_id": "u", "response": "x", "rating": 1},
            {"kind": "opinions", "user_id": "u"},
        ],
    )
    with pytest.raises(DataError, match=r"l\.jsonl:2: field 'kind'"):
        read_data(f)


def test_validate_reports_findings():
    data = PreferenceData(
        comparisons=pd.DataFrame(
            {
                "user_id": ["a", "a", "b", "ghost"],
                "prompt": ["p", "p", "p", "p"],
                "chosen": ["x", "x", "same", ""],
                "rejected": ["y", "y", "same", "y"],
            }
        ),
        users=pd.DataFrame({"user_id": ["a", "b", "idle"], "age": [1, 2, 3]}),
    )
    rep = validate(data)
    assert rep.self_comparisons == 1
    assert rep.duplicates["comparisons"] == 1
    assert rep.unknown_persons == ["ghost"]
    assert rep.unused_users == ["idle"]
    assert rep.empty_texts["comparisons.chosen"] == 1 and rep.empty_texts["items.text"] == 1
    assert not rep.ok and len(rep.findings()) == 6
    d = rep.to_dict()
    assert d["ok"] is False and d["findings"] == rep.findings()
    json.dumps(d)  # JSON-ready


def test_validate_clean_data_and_no_users_table():
    clean = PreferenceData(
        ratings=pd.DataFrame({"user_id": ["a", "b"], "response": ["x", "x"], "rating": [1.0, 2.0]}),
    )
    rep = validate(clean)
    assert (
        rep.ok and rep.findings() == [] and rep.unknown_persons == []
    )  # an empty users table is not checked
    dup = clean.copy(ratings=pd.concat([clean.ratings, clean.ratings.iloc[[0]]], ignore_index=True))
    assert validate(dup).duplicates["ratings"] == 1


def test_rankings_duplicates_are_detected():
    data = PreferenceData(
        rankings=pd.DataFrame({"user_id": ["a", "a", "a"], "responses": [["x", "y"], ["x", "y"], ["y", "x"]]})
    )
    assert validate(data).duplicates["rankings"] == 1
