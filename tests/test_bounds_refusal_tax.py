"""The synthetic report's personalization tax counts the prompts a refusing policy answers with its refusal."""

from __future__ import annotations

import numpy as np

from personalign.bounds.bounded import BoundedPolicy
from personalign.bounds.policy import policy_from_dict
from personalign.bounds.scorers import CallableScorer
from personalign.experiments.bounds import personalization_tax
from personalign.experiments.models import fit_synthetic


def test_tax_reports_refused_prompts_and_the_tax_on_answered_ones():
    data, model = fit_synthetic(persons=30, comparisons_per_person=12, seed=0, encoder="hashing")
    held = data.items[data.items["heldout_prompt"].astype(bool)]
    first = held["prompt"].iloc[0]
    block = set(held.loc[held["prompt"] == first, "text"])  # every candidate of one prompt violates

    def flag(prompts, responses):
        return np.array([1.0 if r in block else 0.0 for r in responses])

    pol = {
        "constraints": [
            {
                "name": "c",
                "scorer": {"type": "attribute", "column": "x"},
                "threshold": 0.5,
                "direction": "max",
            }
        ],
        "trust_region": {"rho": None},
        "consensus": {"enabled": False},
    }
    refuse = BoundedPolicy(model, policy_from_dict(pol, "p.yaml"), scorers={"c": CallableScorer(flag)})
    t = personalization_tax(refuse, model, data)
    assert t["refused_prompt_share"] == 1 / held["prompt"].nunique()
    # on the answered prompts nothing is blocked and the trust region is off: the choice is the raw one
    assert abs(t["tax_mean_answered"]) < 1e-12
    pol["fallback"] = {"mode": "least_violating"}
    least = BoundedPolicy(model, policy_from_dict(pol, "p.yaml"), scorers={"c": CallableScorer(flag)})
    assert personalization_tax(least, model, data)["refused_prompt_share"] == 0.0
