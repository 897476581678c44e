"""Per-person pairs: how ratings, votes and rankings become comparisons, and how well scores order them.

The one rule for pointwise judgments (:func:`pointwise_pairs`): two judgments by the same person, on the same prompt,
of two different items, of the same kind (a rating never pairs with a vote), with different values make one pair;
the higher-valued item is chosen. Equal values are a tie (kept, flagged, only with ``include_ties``). A pair weighs
what its weaker judgment weighs (the smaller weight) and dates from its later judgment. Rankings
(:func:`ranking_pairs`): every pair of the list, the earlier item chosen. Whether a vote's pass takes part is the
caller's choice of pointwise table (see :meth:`personalign.data.PreferenceData.pointwise`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from personalign.data.schema import COMPARISON_COLUMNS, empty_table, item_id_for


def _later(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise the later of two timestamps (the known one when one is missing); numbers stay numbers."""
    na, nb = pd.isna(a), pd.isna(b)
    out = np.where(na, b, a).astype(object)
    both = ~na & ~nb
    if both.any():
        try:
            out[both] = np.where(a[both] >= b[both], a[both], b[both])
        except TypeError:  # timestamps that do not compare (mixed types): the chosen judgment's
            pass
    try:
        return out.astype(float)
    except (TypeError, ValueError):
        return out


def _columns(table: pd.DataFrame | Mapping[str, Sequence]) -> dict[str, np.ndarray]:
    """The columns the pair rule reads, as arrays (optional ones filled: no text, weight 1, no time, one kind)."""
    names = table.columns if isinstance(table, pd.DataFrame) else table.keys()
    n = len(table) if isinstance(table, pd.DataFrame) else len(table["user_id"])

    def get(name: str, dtype: type, default: object) -> np.ndarray:
        if name not in names:
            return np.full(n, default, dtype=dtype)
        v = table[name]
        return v.to_numpy(dtype) if isinstance(v, pd.Series) else np.asarray(v, dtype=dtype)

    return {
        "user_id": get("user_id", object, None),
        "prompt": get("prompt", object, ""),
        "response": get("response", object, ""),
        "item_id": get("item_id", object, None),
        "rating": get("rating", float, np.nan),
        "weight": get("weight", float, 1.0),
        "timestamp": get("timestamp", object, np.nan),
        "kind": get("kind", object, ""),
    }


def _positions(users: np.ndarray, offset: int = 0) -> dict[object, np.ndarray]:
    """Row positions of each person (in row order), shifted by ``offset``."""
    if len(users) and (users == users[0]).all():  # one person (the online case): no grouping needed
        return {users[0]: np.arange(len(users)) + offset}
    return {u: p + offset for u, p in pd.Series(users).groupby(users).indices.items()}


def pointwise_pairs(
    table: pd.DataFrame | Mapping[str, Sequence],
    *,
    max_pairs_per_user: int | None = None,
    rng: np.random.Generator | None = None,
    include_ties: bool = False,
    against: pd.DataFrame | Mapping[str, Sequence] | None = None,
    columns: Sequence[str] = COMPARISON_COLUMNS,
) -> pd.DataFrame:
    """Per-person comparisons (TRL columns plus ``user_id`` and item ids) from a pointwise table (see the module).

    ``table`` (a DataFrame, or a mapping of equal-length columns) has ``user_id, prompt, item_id, rating`` and
    optionally ``response, weight, timestamp, kind``.
    Persons are taken in sorted order; a person's pairs in the order of their rows. ``max_pairs_per_user`` samples
    that many of a person's pairs (uniformly, without replacement, by ``rng``; order kept). With ``against``, only
    pairs of a row of ``table`` with a row of ``against`` are formed (new judgments against earlier ones).
    ``columns``: the output columns (any of ``COMPARISON_COLUMNS``).
    """
    if max_pairs_per_user is not None and rng is None:
        rng = np.random.default_rng(0)
    col = _columns(table)
    groups = _positions(col["user_id"])
    later: dict[object, np.ndarray] = {}
    if against is not None:
        more = _columns(against)
        later = _positions(more["user_id"], offset=len(col["user_id"]))
        col = {k: np.concatenate([v, more[k]]) for k, v in col.items()}
    s, win, lose = col["rating"], [], []
    for uid in sorted(groups):
        rows = groups[uid]
        if against is None:
            i, j = np.triu_indices(len(rows), k=1)
            i, j = rows[i], rows[j]
        else:
            other = later.get(uid, np.zeros(0, np.int64))
            i, j = np.repeat(rows, len(other)), np.tile(other, len(rows))
        keep = (col["prompt"][i] == col["prompt"][j]) & (col["item_id"][i] != col["item_id"][j])
        keep &= col["kind"][i] == col["kind"][j]
        if not include_ties:
            keep &= s[i] != s[j]
        i, j = i[keep], j[keep]
        if max_pairs_per_user is not None and len(i) > max_pairs_per_user:
            sel = np.sort(rng.choice(len(i), size=max_pairs_per_user, replace=False))
            i, j = i[sel], j[sel]
        first = s[i] >= s[j]  # an equal pair (a tie) keeps its first row first
        win.append(np.where(first, i, j))
        lose.append(np.where(first, j, i))
    hi = np.concatenate(win) if win else np.zeros(0, np.int64)
    if not len(hi):
        return empty_table(list(columns))
    lo = np.concatenate(lose)
    make = {
        "user_id": lambda: col["user_id"][hi],
        "prompt": lambda: col["prompt"][hi],
        "chosen": lambda: col["response"][hi],
        "rejected": lambda: col["response"][lo],
        "tie": lambda: s[hi] == s[lo],
        "weight": lambda: np.minimum(col["weight"][hi], col["weight"][lo]),
        "timestamp": lambda: _later(col["timestamp"][hi], col["timestamp"][lo]),
        "chosen_id": lambda: col["item_id"][hi],
        "rejected_id": lambda: col["item_id"][lo],
    }
    return pd.DataFrame({c: make[c]() for c in columns})


def ranking_pairs(rankings: pd.DataFrame) -> pd.DataFrame:
    """Every pair (i < j) of each ranking (best first) as a comparison, the earlier item chosen."""
    rows = []
    for r in rankings.itertuples(index=False):
        resp = list(r.responses)
        ids = [item_id_for(r.prompt, t) for t in resp]
        for i in range(len(resp)):
            for j in range(i + 1, len(resp)):
                rows.append(
                    (r.user_id, r.prompt, resp[i], resp[j], False, r.weight, r.timestamp, ids[i], ids[j])
                )
    if not rows:
        return empty_table(COMPARISON_COLUMNS)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def pairwise_judgments(comparisons: pd.DataFrame, rankings: pd.DataFrame) -> pd.DataFrame:
    """Native comparisons and every pair of every ranking (:func:`ranking_pairs`) as one comparisons table."""
    frames = [comparisons[COMPARISON_COLUMNS]] if len(comparisons) else []
    if len(rankings):
        frames.append(ranking_pairs(rankings))
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_table(COMPARISON_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["tie"] = out["tie"].fillna(False).astype(bool)
    return out


def pair_key(a: Sequence[str] | np.ndarray, b: Sequence[str] | np.ndarray) -> np.ndarray:
    """The unordered item pair of two item-id columns: ``"lo|hi"`` with the smaller id first."""
    a = np.asarray(a, dtype=object).astype(str)
    b = np.asarray(b, dtype=object).astype(str)
    lo, hi = np.where(a < b, a, b), np.where(a < b, b, a)
    return (pd.Series(lo, dtype=object) + "|" + pd.Series(hi, dtype=object)).to_numpy(object)


def pair_outcomes(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Comparisons as pointwise judgments of item pairs: ``user_id, item_id, prompt, rating, first, second``.

    The unit is the unordered pair (``item_id`` = :func:`pair_key`, ``first`` < ``second``); ``rating`` is +1 when
    the person preferred ``first``, -1 when they preferred ``second`` and 0 for a tie (no side), so the agreement
    rule of :mod:`personalign.data.pointwise` (neutral answer 0) applies to comparison data unchanged.
    """
    a = comparisons["chosen_id"].astype(str).to_numpy(object)
    b = comparisons["rejected_id"].astype(str).to_numpy(object)
    tie = (
        comparisons["tie"].fillna(False).astype(bool).to_numpy()
        if "tie" in comparisons
        else np.zeros(len(a), bool)
    )
    y = np.where(tie, 0.0, np.where(a < b, 1.0, -1.0))
    return pd.DataFrame(
        {
            "user_id": comparisons["user_id"].astype(str).to_numpy(object),
            "item_id": pair_key(a, b),
            "prompt": comparisons["prompt"].astype(str).to_numpy(object),
            "rating": y,
            "first": np.where(a < b, a, b),
            "second": np.where(a < b, b, a),
        }
    )


# ------------------------------------------------------------------------------------- scoring a person's pairs
def pair_correct(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """1 where p > 1/2, 0 where p < 1/2, 1/2 at exactly 1/2 (a coin flip in expectation)."""
    p = np.asarray(p, dtype=float)
    return np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5))


def per_person_accuracy(user_ids: Sequence[str] | np.ndarray, p: np.ndarray | Sequence[float]) -> pd.Series:
    """Accuracy of each person on their own pairs (index: user_id as text, sorted); ``p`` = P(chosen wins)."""
    df = pd.DataFrame({"u": np.asarray(user_ids, dtype=object).astype(str), "c": pair_correct(p)})
    return df.groupby("u", sort=True)["c"].mean()
