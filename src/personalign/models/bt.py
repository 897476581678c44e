"""Bradley-Terry baselines: one reward for everybody, one per group, one per person with no sharing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import POPULATION_USER, PreferenceData
from personalign.errors import DataError
from personalign.features.pairs import PairFeaturizer
from personalign.models.linear import LinearGaussianModel


class AggregatedBT(LinearGaussianModel):
    """One reward for everybody: ``r(x, y) = mu^T phi(x, y)`` fitted on everyone's pooled comparisons (K = 0).

    The standard RLHF reward model (the baseline the project argues against); its posteriors have size 0, so
    ``adapt`` returns the empty prior and every person gets the same scores.
    """

    name = "bt"
    aliases = ("aggregated",)

    def _units(self, data: PreferenceData | None, comps: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
        return [], {}


class GroupBT(LinearGaussianModel):
    """One reward per group: ``r_u = (mu + v_{g(u)})^T phi``, ``v_g ~ N(0, I / prior_precision)`` (B = I, K = d).

    ``group_col`` names a column of the users table (e.g. a demographic); persons without a group and unknown
    groups get the population reward ``mu``. ``prior(user_row)`` is the group's posterior mean when the row
    names a known group (cold start from side information). Unit covariances are not stored (``d x d`` each);
    ``posterior`` reports the prior covariance for them.
    """

    name = "group"
    identity_basis = True
    store_unit_covs = False

    def __init__(self, group_col: str = "group", featurizer: PairFeaturizer | None = None, **kw: Any) -> None:
        super().__init__(featurizer, **kw)
        self.group_col = group_col

    def _units(self, data: PreferenceData | None, comps: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
        if data is None or self.group_col not in data.users.columns:
            have = [] if data is None else data.demographic_columns
            raise DataError(
                f"GroupBT needs the users table column {self.group_col!r}",
                field=self.group_col,
                expected=f"a users column naming each person's group (present: {have})",
            )
        u = data.users[["user_id", self.group_col]].dropna().drop_duplicates("user_id")
        groups = sorted(u[self.group_col].astype(str).unique())
        gi = {g: i for i, g in enumerate(groups)}
        self.group_index_ = gi
        # zip over columns, not itertuples: a column name like Polis' "group-id" is no attribute name
        return groups, {
            str(uid): gi[str(g)]
            for uid, g in zip(u["user_id"], u[self.group_col])
            if str(uid) != POPULATION_USER
        }

    def _prior_mean(self, user_row: dict | None) -> np.ndarray:
        if user_row and self.group_col in user_row:
            j = {g: i for i, g in enumerate(self.units_)}.get(str(user_row[self.group_col]), -1)
            if j >= 0:
                return self.unit_means_[j]
        return self.prior_mean_

    def _artifact_config(self) -> dict[str, Any]:
        return {**super()._artifact_config(), "groups": list(self.units_)}


class IndependentBT(LinearGaussianModel):
    """One reward per person, no sharing beyond a common mean: ``r_u = (mu + w_u)^T phi``, ``w_u ~ N(0, I / prior_precision)``.

    ``B = I`` (K = d). Each person's weights are learned from their own comparisons only (shrunk toward the
    population mean ``mu``), the other extreme from AggregatedBT. Unit covariances are not stored (``d x d`` per
    person); ``posterior`` reports the prior covariance, and ``adapt`` computes the exact Laplace covariance.
    """

    name = "independent"
    identity_basis = True
    store_unit_covs = False
