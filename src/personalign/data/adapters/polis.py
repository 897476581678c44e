"""Polis conversation exports (compdemocracy openData): participants x statements, agree / disagree / pass.

A conversation folder holds ``participants-votes.csv`` (``participant, group-id, n-comments, n-votes, n-agree,
n-disagree`` then one column per comment id; a cell is 1 agree, -1 disagree, 0 pass, blank unseen),
``comments.csv`` (``comment-id, author-id, agrees, disagrees, moderated, comment-body``, ...) and optionally
``summary.csv`` (``topic``, ``url``, ...).

Each seen cell -> a ``vote``; the prompt is the conversation's topic (so per-person comparisons stay within one
conversation); the response is the comment text. Ids are namespaced by conversation (``<conv>:<participant>``,
``<conv>:<comment-id>``) because Polis ids restart in every conversation. The users table keeps ``group-id``
(Polis' opinion group; missing for participants not clustered) and any other participant column (``xid``). Moderated-out comments (``moderated`` -1) are
kept with their flag in the items table. A folder of conversations reads every conversation in it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from personalign.data.core import PreferenceData, concat
from personalign.data.tables import read_csv_frame, require_columns
from personalign.data.validate import csv_line_locator, show_value
from personalign.errors import DataError

FIXED = ["participant", "group-id", "n-comments", "n-votes", "n-agree", "n-disagree"]


def _summary(folder: Path) -> dict[str, str]:
    p = folder / "summary.csv"
    if not p.exists():
        return {}
    with open(p, newline="", encoding="utf-8", errors="replace") as fh:
        return {r[0]: r[1] for r in csv.reader(fh) if len(r) >= 2}


def _vote_matrix(pv: pd.DataFrame, pv_path: Path) -> tuple[list, list, np.ndarray]:
    """(comment columns, participant columns, votes as floats with NaN unseen), each cell and id checked."""
    src = str(pv_path)
    # comment columns are integer ids; other columns describe the participant (newer exports add ``xid``)
    vote_cols = [c for c in pv.columns if c not in FIXED and str(c).strip().lstrip("-").isdigit()]
    side_cols = [c for c in pv.columns if c not in FIXED and c not in vote_cols and c != "participant"]
    if not vote_cols:
        raise DataError(
            "no comment-id columns",
            file=src,
            field="participant-votes",
            expected="one integer-named column per comment after " + ", ".join(FIXED),
        )
    m = pv[vote_cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    raw_present = pv[vote_cols].notna().to_numpy()
    bad = raw_present & ~np.isin(m, [-1.0, 0.0, 1.0])
    if bad.any():
        r, c = map(int, np.argwhere(bad)[0])
        raise DataError(
            f"got {show_value(pv[vote_cols[c]].iloc[r])}",
            file=src,
            field=str(vote_cols[c]),
            expected="1 agree, -1 disagree, 0 pass or blank (unseen)",
            **csv_line_locator(pv_path)(r),
        )
    if pv["participant"].isna().any() or pv["participant"].duplicated().any():
        r = int(np.flatnonzero(pv["participant"].isna() | pv["participant"].duplicated())[0])
        raise DataError(
            "missing or repeated participant id",
            file=src,
            field="participant",
            expected="one row per participant",
            **csv_line_locator(pv_path)(r),
        )
    return vote_cols, side_cols, m


def read_polis_conversation(folder: Path, name: str | None = None) -> PreferenceData:
    conv = folder.name
    pv_path = folder / "participants-votes.csv"
    src = str(pv_path)
    pv = pd.read_csv(pv_path, low_memory=False)
    require_columns(pv, FIXED[:2], source=src)
    vote_cols, side_cols, m = _vote_matrix(pv, pv_path)

    com_path = folder / "comments.csv"
    topic = _summary(folder).get("topic", conv)
    if com_path.exists():
        com = read_csv_frame(com_path, text_columns=("comment-body",))
        require_columns(com, ["comment-id", "comment-body"], source=str(com_path))
    else:
        com = pd.DataFrame({"comment-id": pd.Series(dtype=int), "comment-body": pd.Series(dtype=str)})
    com_key = pd.to_numeric(com["comment-id"], errors="coerce").astype("Int64").astype(str)
    body = pd.Series(com["comment-body"].fillna("").astype(str).to_numpy(), index=com_key.to_numpy())
    body = body[~body.index.duplicated()]

    rows, cols = np.nonzero(~np.isnan(m))
    pid = (
        pv["participant"].astype("int64").astype(str).to_numpy()
        if pd.api.types.is_numeric_dtype(pv["participant"])
        else pv["participant"].astype(str).to_numpy()
    )
    cids = np.array([str(int(str(c).strip())) for c in vote_cols], dtype=object)
    texts = body.reindex(cids).fillna("").to_numpy(object)  # a comment absent from comments.csv: empty text
    votes = pd.DataFrame(
        {
            "user_id": (conv + ":") + pd.Series(pid[rows], dtype=object),
            "prompt": topic,
            "response": texts[cols],
            "item_id": (conv + ":") + pd.Series(cids[cols], dtype=object),
            "vote": m[rows, cols].astype(int),
            "weight": 1.0,
            "timestamp": np.nan,
        }
    )
    users = pd.DataFrame(
        {
            "user_id": conv + ":" + pd.Series(pid, dtype=object),
            "group-id": pd.to_numeric(pv["group-id"], errors="coerce").astype("Int64"),
        }
    )
    for c in side_cols:
        users[c] = pv[c].to_numpy()
    items = pd.DataFrame(
        {
            "item_id": conv + ":" + pd.Series(cids, dtype=object),
            "prompt": topic,
            "text": texts,
            "conversation": conv,
            "comment_id": cids,
        }
    )
    if len(com):
        info = com.assign(comment_id=com_key.to_numpy()).drop_duplicates("comment_id").set_index("comment_id")
        for c in ("moderated", "author-id", "agrees", "disagrees", "timestamp"):
            if c in info.columns:
                items[c] = info[c].reindex(cids).to_numpy()
        if "moderated" in items.columns:
            items["moderated"] = pd.to_numeric(items["moderated"], errors="coerce").astype("Int64")
    return PreferenceData(
        votes=votes,
        users=users,
        items=items,
        name=name or f"polis-{conv}",
        meta={
            "source": str(folder),
            "conversation": conv,
            "topic": topic,
            "url": _summary(folder).get("url"),
        },
    )


def read_polis(path: str | Path, *, name: str | None = None) -> PreferenceData:
    """Read one conversation (its folder or its ``participants-votes.csv``) or a folder of conversations."""
    path = Path(path)
    if path.is_file():
        if path.name != "participants-votes.csv":
            raise DataError(
                "not a Polis participant x comment matrix",
                file=str(path),
                expected="participants-votes.csv or its conversation folder",
            )
        return read_polis_conversation(path.parent, name)
    if (path / "participants-votes.csv").exists():
        return read_polis_conversation(path, name)
    convs = sorted(p for p in path.iterdir() if (p / "participants-votes.csv").exists())
    if not convs:
        raise DataError(
            "no participants-votes.csv here or in its subfolders",
            file=str(path),
            expected="a Polis conversation export",
        )
    data = concat([read_polis_conversation(p) for p in convs], name=name or f"polis-{path.name}")
    data.meta = {"source": str(path), "conversations": [p.name for p in convs]}
    return data
