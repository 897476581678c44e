"""ConvAbuse (Cercas Curry, Abercrombie & Rieser, EMNLP 2021): abuse towards conversational agents, by 8 annotators.

File ``ConvAbuseEMNLPfull.csv``, one row per annotator judgment: ``example_no, annotator_id, conv_id, prev_agent,
prev_user, agent, user, bot``, the severity one-hot ``is_abuse.1`` (not abusive), ``is_abuse.0`` (ambiguous),
``is_abuse.-1`` (mild), ``is_abuse.-2`` (strong), ``is_abuse.-3`` (very strong), and for abusive judgments the
``type.*``, ``target.*`` and ``direction.*`` flags. ``_`` marks a turn that does not exist.

Each judgment -> a ``rating`` of the user utterance (the response) given the previous turns as the prompt
(``Agent: ...`` / ``User: ...`` / ``Agent: ...``, missing turns left out). The rating is the severity, oriented like
the other offensiveness data (higher = more abusive): minus the upstream level, so -1 not abusive, 0 ambiguous,
1 mild, 2 strong, 3 very strong on the scale (-1, 3); "ambiguous" takes no side (``meta["neutral_rating"]`` = 0).
Item id ``convabuse:<conv_id>:<hash of the turns>``; items keep ``conv_id`` and ``bot``; the secondary flags stay on
the rating rows. Repeat annotations (an annotator judging the same item again, kept upstream for
intra-annotator agreement) are merged: the last in file order is kept, and ``meta["repeat_judgments"]`` says how
many were dropped and how many agreed with the kept one (``personalign data inspect`` reports it). Rows without a
user utterance (every turn ``_``: nothing to judge) are left out and counted in ``meta["skipped_rows"]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData, item_id_for
from personalign.data.tables import read_csv_frame, require_columns
from personalign.data.validate import csv_line_locator, show_value, to_numeric
from personalign.errors import DataError

FULL_FILE = "ConvAbuseEMNLPfull.csv"
LEVELS = {"is_abuse.1": -1.0, "is_abuse.0": 0.0, "is_abuse.-1": 1.0, "is_abuse.-2": 2.0, "is_abuse.-3": 3.0}
SCALE = (-1.0, 3.0)
NEUTRAL = 0.0  # "ambiguous": neither abusive nor not
TURNS = ("prev_agent", "prev_user", "agent", "user")
ROLES = {"prev_agent": "Agent", "prev_user": "User", "agent": "Agent"}
MISSING_TURN = "_"
FLAG_PREFIXES = ("type.", "target.", "direction.", "directness.")


def is_convabuse_header(header: set[str]) -> bool:
    """The full file's columns, or the wide split files' (``Annotator1_is_abuse.1``, ...)."""
    full = {"annotator_id", "conv_id", "user", "is_abuse.1"} <= header
    wide = "user" in header and any(c.endswith("_is_abuse.1") for c in header)
    return full or wide


def render_prompt(row: dict[str, str]) -> str:
    """The turns before the user utterance, one ``Role: text`` line each (missing turns left out)."""
    return "\n".join(f"{ROLES[t]}: {row[t]}" for t in ROLES if row[t] and row[t] != MISSING_TURN)


def _severity(df: pd.DataFrame, src: str, locate) -> np.ndarray:
    """The rating of each row from the one-hot severity columns (DataError at the first row not one-hot)."""
    onehot = np.column_stack([to_numeric(df[c]).to_numpy(float) for c in LEVELS])
    bad = ~np.isin(onehot, [0.0, 1.0]).all(axis=1) | (np.nansum(onehot, axis=1) != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        got = ", ".join(f"{c}={show_value(df[c].iloc[i])}" for c in LEVELS)
        raise DataError(
            f"got {got}",
            file=src,
            field="is_abuse",
            expected="exactly one of " + ", ".join(LEVELS) + " equal to 1",
            **locate(i),
        )
    return np.asarray(list(LEVELS.values()))[onehot.argmax(axis=1)]


def _merge_repeats(ratings: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int | str]]:
    """Keep the last judgment of each (annotator, item); count what was dropped and how often repeats agreed."""
    key = ["user_id", "item_id"]
    dup = ratings.duplicated(key, keep="last")
    repeated = ratings[ratings.duplicated(key, keep=False)].groupby(key, sort=False)["rating"].nunique()
    info = {
        "dropped": int(dup.sum()),
        "person_items": int(len(repeated)),
        "agreeing": int((repeated == 1).sum()),
        "kept": "last",
    }
    return ratings[~dup].reset_index(drop=True), info


def read_convabuse(path: str | Path, *, name: str | None = None) -> PreferenceData:
    """Read ConvAbuse from its folder or from ``ConvAbuseEMNLPfull.csv``."""
    path = Path(path)
    if path.is_dir():
        path = path / FULL_FILE
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    src = str(path)
    df = read_csv_frame(path, text_columns=("annotator_id", "conv_id", "bot", *TURNS))
    if "annotator_id" not in df.columns and any(str(c).endswith("_is_abuse.1") for c in df.columns):
        raise DataError(
            "a split file with one column per annotator",
            file=src,
            expected=f"the one-row-per-judgment file {FULL_FILE}",
        )
    require_columns(df, ["annotator_id", "conv_id", *TURNS, *LEVELS], source=src)
    locate = csv_line_locator(path)
    if df["annotator_id"].isna().any():
        i = int(np.flatnonzero(df["annotator_id"].isna().to_numpy())[0])
        raise DataError(
            "missing value", file=src, field="annotator_id", expected="an annotator id", **locate(i)
        )
    rating = _severity(df, src, locate)
    turns = {t: df[t].fillna("").astype(str).to_numpy(object) for t in TURNS}
    prompts = [render_prompt({t: turns[t][k] for t in ROLES}) for k in range(len(df))]
    responses = np.where(turns["user"] == MISSING_TURN, "", turns["user"])
    # a row without a user utterance has nothing to judge (upstream has a few rows of "_" only): left out, counted
    keep = np.array([bool(str(r).strip()) for r in responses])
    conv = df["conv_id"].fillna("").astype(str).to_numpy(object)
    iid = [
        f"convabuse:{c}:{item_id_for(p, r)[:10]}" for c, p, r in zip(conv, prompts, responses, strict=True)
    ]
    flags = [c for c in df.columns if str(c).startswith(FLAG_PREFIXES)]
    ratings = pd.DataFrame(
        {
            "user_id": df["annotator_id"].astype(str).to_numpy(),
            "prompt": prompts,
            "response": responses,
            "item_id": iid,
            "rating": rating,
            "weight": 1.0,
            "timestamp": np.nan,
            **{c: to_numeric(df[c]).astype("Int64").to_numpy() for c in flags},
        }
    )
    ratings, repeats = _merge_repeats(ratings[keep].reset_index(drop=True))
    items = pd.DataFrame(
        {"item_id": iid, "prompt": prompts, "text": responses, "conv_id": conv}
        | ({"bot": df["bot"].astype(str).to_numpy()} if "bot" in df.columns else {})
    )[keep].drop_duplicates("item_id", ignore_index=True)
    users = pd.DataFrame({"user_id": sorted(ratings["user_id"].unique())})
    return PreferenceData(
        ratings=ratings,
        users=users,
        items=items,
        rating_scale=SCALE,
        name=name or "convabuse",
        meta={
            "source": src,
            "label": "severity: -1 not abusive, 0 ambiguous, 1 mild, 2 strong, 3 very strong abuse",
            "neutral_rating": NEUTRAL,
            "repeat_judgments": repeats,
            "skipped_rows": {"no user utterance": int((~keep).sum())},
        },
    )
