"""k-shot adaptation of unseen persons: random and active (``suggest_query``) contexts, and the collapsed prior."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

MAX_ADAPT_DIM = 64  # personal parts larger than this are not adapted from k examples (see kshot_eval)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -50, 50)))


def kshot_eval(
    model: Any,
    pools: dict[str, pd.DataFrame],
    tests: dict[str, pd.DataFrame],
    users: pd.DataFrame,
    ks: Sequence[int],
    rng: np.random.Generator,
    active_max_k: int = 0,
) -> dict[str, Any]:
    """Per-person probabilities on each unseen person's test pairs after adapting from k pool pairs.

    Returns ``{"random": {k: (uids, p)}, "active": {k: ...}, "collapsed": (uids, p)}`` (concatenated over persons).
    Random contexts are nested (the first k of one permutation per person), so the curve is not re-randomized per k.
    """
    rows = users.drop_duplicates("user_id").set_index("user_id")
    if getattr(model, "K_", 0) > MAX_ADAPT_DIM:
        # a d-dimensional personal part (independent BT, group offsets): one Laplace solve costs O(d^3) per person
        # and k, so these are evaluated at k = 0 only (their prior: population or demographic group)
        ks, active_max_k = [k for k in ks if k == 0] or [0], 0
    out: dict[str, Any] = {"random": {k: ([], []) for k in ks}, "active": {}, "collapsed": ([], [])}
    act_ks = [k for k in ks if k <= active_max_k] if active_max_k and hasattr(model, "query_scores") else []
    out["active"] = {k: ([], []) for k in act_ks}
    fast = hasattr(model, "example_arrays") and hasattr(model, "adapt_arrays")
    for uid in sorted(tests):
        test = tests[uid]
        pool = pools.get(uid)
        if pool is None:
            pool = test.iloc[:0]
        row = rows.loc[uid].to_dict() if uid in rows.index else None
        if fast:
            Dt, at, _, _ = model.example_arrays(test)
            prior = model.prior(row)
            pop = model.prior(None)
            out["collapsed"][0].append(np.full(len(test), uid, dtype=object))
            out["collapsed"][1].append(sigmoid(at + Dt @ pop.mean) if pop.dim else sigmoid(at))
            order = rng.permutation(len(pool))
            Dp, ap, yp, wp = model.example_arrays(pool.iloc[order]) if len(pool) else (None,) * 4
            for k in ks:
                kk = min(k, len(pool))
                post = model.adapt_arrays(Dp[:kk], ap[:kk], yp[:kk], wp[:kk], prior) if kk else prior
                p = sigmoid(at + Dt @ post.mean) if post.dim else sigmoid(at)
                out["random"][k][0].append(np.full(len(test), uid, dtype=object))
                out["random"][k][1].append(p)
            if act_ks and len(pool):
                post, remaining = prior, list(range(len(pool)))
                for step in range(0, max(act_ks) + 1):
                    if step in out["active"]:
                        p = sigmoid(at + Dt @ post.mean) if post.dim else sigmoid(at)
                        out["active"][step][0].append(np.full(len(test), uid, dtype=object))
                        out["active"][step][1].append(p)
                    if not remaining or step == max(act_ks):
                        if step < max(act_ks):  # pool exhausted: later k see the same posterior
                            for k2 in act_ks:
                                if k2 > step:
                                    out["active"][k2][0].append(np.full(len(test), uid, dtype=object))
                                    out["active"][k2][1].append(
                                        sigmoid(at + Dt @ post.mean) if post.dim else sigmoid(at)
                                    )
                        break
                    sc = model.query_scores(post, Dp[remaining], ap[remaining])
                    j = remaining.pop(int(np.argmax(sc)))
                    post = model.adapt_arrays(Dp[[j]], ap[[j]], yp[[j]], wp[[j]], post)
        else:  # item-level baselines and oracles: nothing to adapt
            p = model.predict_proba(test)
            for k in ks:
                out["random"][k][0].append(np.full(len(test), uid, dtype=object))
                out["random"][k][1].append(p)
            out["collapsed"][0].append(np.full(len(test), uid, dtype=object))
            out["collapsed"][1].append(model.collapsed().predict_proba(test))

    def cat(t: tuple[list, list]) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.concatenate(t[0]) if t[0] else np.zeros(0, object),
            np.concatenate(t[1]) if t[1] else np.zeros(0),
        )

    return {
        "random": {k: cat(v) for k, v in out["random"].items()},
        "active": {k: cat(v) for k, v in out["active"].items()},
        "collapsed": cat(out["collapsed"]),
    }
