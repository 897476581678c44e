"""scikit-learn model selection on preference data: judgments as samples, a splitter, a per-person scorer.

``GridSearchCV`` splits its ``X`` by row positions; :class:`PreferenceSamples` is a :class:`PreferenceData` whose
judgments are those rows (the users and items tables travel with every subset), :class:`JudgmentKFold` deals each
person's judgments over the folds (every held-out person is known to the model trained on the other folds), and
:func:`per_person_accuracy_score` is the ``scoring=`` callable::

    search = GridSearchCV(LowRankBT(rank=4), {"l2_basis": [1.0, 30.0]},
                          scoring=per_person_accuracy_score, cv=JudgmentKFold(3))
    search.fit(PreferenceSamples.of(data))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import KINDS, PreferenceData


class PreferenceSamples(PreferenceData):
    """PreferenceData indexable by judgment position (comparisons first, then ratings, rankings, votes)."""

    @classmethod
    def of(cls, data: PreferenceData) -> PreferenceSamples:
        """The same data, indexable by judgment (for scikit-learn's model selection)."""
        return cls(**{f.name: getattr(data, f.name) for f in dataclasses.fields(data)})

    @property
    def iloc(self) -> PreferenceSamples:
        return self

    def __getitem__(self, key: Any) -> PreferenceSamples:
        return self.take(key)

    def take(self, indices: Any, axis: int = 0) -> PreferenceSamples:
        """The judgments at these positions (or where a boolean mask is true), with the same users and items."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        tables, start = {}, 0
        for kind in KINDS:
            tab = getattr(self, kind)
            own = idx[(idx >= start) & (idx < start + len(tab))] - start
            tables[kind] = tab.iloc[own].reset_index(drop=True)
            start += len(tab)
        return self.copy(**tables)

    def sample_users(self) -> np.ndarray:
        """The person of every judgment, in sample order."""
        return np.concatenate([getattr(self, k)["user_id"].astype(str).to_numpy(object) for k in KINDS])


class JudgmentKFold:
    """K folds of judgments with every person's judgments dealt over the folds at random (deterministic by seed)."""

    def __init__(self, n_splits: int = 5, random_state: int = 0) -> None:
        self.n_splits = n_splits
        self.random_state = random_state

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """The number of folds."""
        return self.n_splits

    def split(
        self, X: PreferenceSamples, y: Any = None, groups: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(train, test) judgment positions for each fold; every person's judgments are dealt over the folds."""
        users = pd.Series(X.sample_users())
        rng = np.random.default_rng(self.random_state)
        order = pd.Series(rng.random(len(users))).groupby(users).rank(method="first").to_numpy()
        # a random offset per person, so one-judgment persons do not all land in the first fold
        offset = users.map(dict(zip(users.unique(), rng.integers(self.n_splits, size=users.nunique()))))
        fold = (order.astype(int) + offset.to_numpy()) % self.n_splits
        for k in range(self.n_splits):
            yield np.flatnonzero(fold != k), np.flatnonzero(fold == k)


def per_person_accuracy_score(estimator: Any, X: PreferenceData, y: Any = None) -> float:
    """Mean over persons of the share of their comparisons (ties left out) whose chosen response the model ranks
    higher (even odds count half): a ``scoring=`` callable for scikit-learn. Ratings and votes count through
    their pairs; P(chosen > rejected) is ``predict_proba`` where it gives one per pair, else the rewards' order."""
    comps = X.to_comparisons()
    comps = comps[~comps["tie"].astype(bool)].reset_index(drop=True)
    if len(comps) == 0:
        return float("nan")
    if getattr(estimator, "predicts_pairs", True):
        p = np.asarray(estimator.predict_proba(comps), dtype=np.float64)
    else:
        users, prompts = comps["user_id"].astype(str).tolist(), comps["prompt"].astype(str).tolist()
        d = estimator.score(users, prompts, comps["chosen"].tolist()) - estimator.score(
            users, prompts, comps["rejected"].tolist()
        )
        p = 0.5 + 0.5 * np.sign(np.asarray(d, dtype=np.float64))
    hit = (p > 0.5) + 0.5 * (p == 0.5)
    return float(pd.Series(hit).groupby(comps["user_id"].to_numpy()).mean().mean())
