"""BoundedPolicy: personalized rewards inside universal constraints, a trust region and consensus-aware bounds.

Bounded reward (lexicographic):  R_u(x, y) = OFFSET * c(x, y) + sigma(r~_u(x, y)),  with
  c(x, y) = 1 if every blocking constraint holds for y else 0,  sigma(t) = 1 / (1 + e^-t) in [0, 1],
  r~_u = r_pop + s(agreement) * (r_{Pi(w_u)} - r_pop)   (trust-region projection Pi, consensus scale s), OFFSET = 2.

Guarantee. For any person u, any personal parameter (finite, huge, inf or nan: a nan reward is mapped to -inf),
any prompt and any candidates y_s (satisfying) and y_v (violating):
  R_u(y_s) >= OFFSET + 0 = 2 > 1 >= 0 + sigma(.) = R_u(y_v),
because sigma maps the extended reals into [0, 1] (floating point may round sigma to exactly 0 or 1, which is why
OFFSET is 2 and not 1: the inequality 2 > 1 survives rounding, and 2 + t for t in [0, 1] is exact in float64).
So every satisfying candidate strictly outranks every violating one whatever the weights are; only the order
*within* each class depends on the person. Nothing about the personal model enters c(x, y): constraints are
scored by universal scorers that see only (prompt, response).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from personalign.bounds.policy import Policy, load_policy
from personalign.bounds.scorers import AttributeScorer, build_scorer
from personalign.bounds.trust import Agreement, consensus_scale, project_trust_region
from personalign.errors import ConfigError

OFFSET = 2.0


def squash(r: np.ndarray) -> np.ndarray:
    """sigma(r) in [0, 1] for any float, nan -> 0 (an undefined personal reward never helps a candidate)."""
    r = np.asarray(r, dtype=np.float64)
    r = np.where(np.isnan(r), -np.inf, r)
    with np.errstate(over="ignore"):
        return 0.5 * (1.0 + np.tanh(r / 2.0))


def bounded_reward(personal: np.ndarray, satisfied: np.ndarray) -> np.ndarray:
    """R = OFFSET * satisfied + sigma(personal): any satisfying candidate > any violating one (module docstring)."""
    return OFFSET * np.asarray(satisfied, dtype=np.float64) + squash(personal)


def bounded_order(
    personal: np.ndarray, satisfied: np.ndarray, n_violations: np.ndarray | None = None
) -> np.ndarray:
    """Indices best first: satisfying candidates by personal reward, then violating ones by fewest violations,
    then personal reward (the least-violating fallback order). Stable for ties."""
    personal = np.asarray(personal, dtype=np.float64)
    sat = np.asarray(satisfied, bool)
    nv = np.zeros(len(sat)) if n_violations is None else np.asarray(n_violations, dtype=np.float64)
    key_r = np.where(np.isnan(personal), -np.inf, personal)
    # np.lexsort sorts by the last key first
    return np.lexsort((-key_r, np.where(sat, 0.0, nv), ~sat))


@dataclass
class Ranking:
    """The outcome of :meth:`BoundedPolicy.rank` for one person and prompt."""

    candidates: list[str]
    order: np.ndarray
    bounded: np.ndarray
    personal: np.ndarray
    satisfied: np.ndarray
    violations: list[list[str]]
    scores: dict[str, np.ndarray]
    fallback: bool
    choice: str
    refused: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "choice": self.choice,
            "refused": self.refused,
            "fallback": self.fallback,
            "ranking": [
                {
                    "candidate": self.candidates[i],
                    "bounded_reward": float(self.bounded[i]),
                    "personal_reward": float(self.personal[i]),
                    "satisfied": bool(self.satisfied[i]),
                    "violations": self.violations[i],
                }
                for i in self.order
            ],
            "notes": self.notes,
        }


class BoundedPolicy:
    """A personalized model wrapped by a policy: ``rank`` and ``reward`` under universal constraints.

    ``model`` follows the personalign model contract (``score_posterior``, ``prior``, ``posterior``); ``policy`` is a
    :class:`Policy` or a path. ``scorers`` overrides/adds scorers by constraint name; ``items`` (a DataFrame with a
    ``text`` column) binds attribute scorers; ``agreement`` gives population agreement per response (consensus
    bounds). Persons are user ids, :class:`Posterior` objects or raw weight vectors (adversarial ones included).
    """

    def __init__(
        self,
        model: Any,
        policy: Policy | str | Any,
        scorers: Mapping[str, Any] | None = None,
        items: Any = None,
        agreement: Agreement | Mapping[str, float] | None = None,
    ) -> None:
        self.model = model
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        base = self.policy.resolve(".") if self.policy.source else None
        self.scorers: dict[str, Any] = {}
        self.thresholds: dict[str, float] = {}
        for c in self.policy.constraints:
            sc = (scorers or {}).get(c.name)
            if sc is None:
                sc = build_scorer(c.scorer, base)
            if isinstance(sc, AttributeScorer) and items is not None:
                sc.bind(items)
            self.scorers[c.name] = sc
            if c.threshold == "calibrated":
                t = getattr(sc, "threshold_", None)
                if t is None:
                    raise ConfigError(
                        f"{self.policy.source}: field 'constraints.{c.name}.threshold': 'calibrated' needs a scorer "
                        f"with a calibrated threshold_; give a number instead"
                    )
                self.thresholds[c.name] = float(t)
            else:
                self.thresholds[c.name] = float(c.threshold)
        if agreement is None or isinstance(agreement, Agreement):
            self.agreement = agreement
        else:
            self.agreement = Agreement(agreement)

    # ------------------------------------------------------------------------------------- constraints
    def check(self, prompts: str | Sequence[str], responses: Sequence[str]) -> dict[str, Any]:
        """Scores and satisfaction per constraint: ``satisfied`` (n,) over blocking constraints, ``violations``."""
        responses = [str(r) for r in responses]
        prompts = [prompts] * len(responses) if isinstance(prompts, str) else [str(p) for p in prompts]
        n = len(responses)
        scores: dict[str, np.ndarray] = {}
        ok_block = np.ones(n, bool)
        n_viol = np.zeros(n)
        viol: list[list[str]] = [[] for _ in range(n)]
        for c in self.policy.constraints:
            s = (
                np.asarray(self.scorers[c.name].score(prompts, responses), dtype=np.float64)
                if n
                else np.zeros(0)
            )
            t = self.thresholds[c.name]
            ok = (s >= t) if c.direction == "min" else (s <= t)
            ok &= np.isfinite(s)  # unscorable -> violated (fail closed)
            scores[c.name] = s
            for i in np.flatnonzero(~ok):
                viol[i].append(c.name if c.severity == "block" else f"{c.name} (warn)")
            if c.severity == "block":
                ok_block &= ok
                n_viol += ~ok
        return {"scores": scores, "satisfied": ok_block, "violations": viol, "n_violations": n_viol}

    # ------------------------------------------------------------------------------------- personal part
    def _prior(self):
        return self.model.prior()

    def weights(self, person: Any) -> np.ndarray | None:
        """The person's parameters after the trust-region projection (None for a model without personal part)."""
        if isinstance(person, str):
            w = np.asarray(self.model.posterior(person).mean, dtype=np.float64)
        elif isinstance(person, np.ndarray | list | tuple):
            w = np.asarray(person, dtype=np.float64)
        else:  # a Posterior (or anything with a mean vector)
            w = np.asarray(person.mean, dtype=np.float64)
        prior = self._prior()
        m = np.asarray(prior.mean, dtype=np.float64)
        if m.size == 0:
            return w if w.size == 0 else np.zeros(0)
        if w.shape != m.shape:
            raise ConfigError(f"personal parameters have shape {w.shape}, the model's prior has {m.shape}")
        pz = self.policy.personalize
        return project_trust_region(
            w,
            m,
            np.asarray(prior.cov),
            self.policy.trust_region.rho,
            fixed=pz.fixed,
            personalizable=None if pz.dims == "all" else pz.dims,
        )

    def personal_reward(
        self, person: Any, prompts: str | Sequence[str], responses: Sequence[str]
    ) -> np.ndarray:
        """r~_u: the projected personal reward, shrunk toward the population's where the population agrees."""
        responses = [str(r) for r in responses]
        prompts = [prompts] * len(responses) if isinstance(prompts, str) else [str(p) for p in prompts]
        w = self.weights(person)
        prior = self._prior()
        r_pop = np.asarray(
            self.model.score_posterior(np.asarray(prior.mean, float), prompts, responses), float
        )
        if w is None or w.size == 0:
            return r_pop
        r_u = np.asarray(self.model.score_posterior(w, prompts, responses), dtype=np.float64)
        cs = self.policy.consensus
        if cs.enabled and self.agreement is not None:
            s = consensus_scale(self.agreement(prompts, responses), cs.gamma, cs.min_agreement)
            with np.errstate(invalid="ignore"):
                r_u = r_pop + s * (r_u - r_pop)
        return r_u

    def personal_matrix(
        self, persons: np.ndarray, prompts: str | Sequence[str], responses: Sequence[str]
    ) -> np.ndarray:
        """r~ for many raw weight vectors at once: (n_persons, n_responses) (the vectorized path of
        :meth:`personal_reward`, for audits and figures; uses the model's ``basis`` when it has one)."""
        responses = [str(r) for r in responses]
        prompts = [prompts] * len(responses) if isinstance(prompts, str) else [str(p) for p in prompts]
        prior = self._prior()
        m = np.asarray(prior.mean, dtype=np.float64)
        W = np.atleast_2d(np.asarray(persons, dtype=np.float64))
        if m.size == 0:
            r = np.asarray(self.model.score_posterior(m, prompts, responses), float)
            return np.tile(r, (len(W), 1))
        pz = self.policy.personalize
        Wp = project_trust_region(
            W,
            m,
            np.asarray(prior.cov),
            self.policy.trust_region.rho,
            fixed=pz.fixed,
            personalizable=None if pz.dims == "all" else pz.dims,
        )
        if hasattr(self.model, "basis"):
            s, g = self.model.basis(prompts, responses)
            with np.errstate(invalid="ignore", over="ignore"):
                r_u = s[None, :] + Wp @ np.asarray(g, float).T
            r_pop = s + np.asarray(g, float) @ m
        else:
            r_u = np.stack([np.asarray(self.model.score_posterior(w, prompts, responses), float) for w in Wp])
            r_pop = np.asarray(self.model.score_posterior(m, prompts, responses), float)
        cs = self.policy.consensus
        if cs.enabled and self.agreement is not None:
            sc = consensus_scale(self.agreement(prompts, responses), cs.gamma, cs.min_agreement)
            with np.errstate(invalid="ignore"):
                r_u = r_pop[None, :] + sc[None, :] * (r_u - r_pop[None, :])
        return r_u

    # ------------------------------------------------------------------------------------- public API
    def reward(
        self, person: Any, prompt: str | Sequence[str], response: str | Sequence[str]
    ) -> np.ndarray | float:
        """Bounded reward R_u in [0, 1] (violating) or [2, 3] (satisfying); a single response gives a float."""
        single = isinstance(response, str)
        responses = [response] if single else list(response)
        chk = self.check(prompt, responses)
        out = bounded_reward(self.personal_reward(person, prompt, responses), chk["satisfied"])
        return float(out[0]) if single else out

    def rank(self, person: Any, prompt: str, candidates: Sequence[str]) -> Ranking:
        """Candidates best first; satisfying ones always above violating ones. If none satisfies: the policy's
        fallback (``refuse``: the choice is the refusal text; ``least_violating``: the top one, flagged)."""
        cands = [str(c) for c in candidates]
        chk = self.check(prompt, cands)
        personal = self.personal_reward(person, prompt, cands) if cands else np.zeros(0)
        sat = chk["satisfied"]
        order = bounded_order(personal, sat, chk["n_violations"])
        fallback = not bool(sat.any())
        refused = fallback and self.policy.fallback.mode == "refuse"
        notes = []
        if fallback:
            notes.append(f"no candidate satisfies the constraints ({self.policy.fallback.mode})")
        choice = self.policy.fallback.refusal_text if refused or not cands else cands[int(order[0])]
        return Ranking(
            candidates=cands,
            order=order,
            bounded=bounded_reward(personal, sat),
            personal=personal,
            satisfied=sat,
            violations=chk["violations"],
            scores=chk["scores"],
            fallback=fallback,
            choice=choice,
            refused=refused,
            notes=notes,
        )
