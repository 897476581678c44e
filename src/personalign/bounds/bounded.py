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

Without a policy (``BoundedPolicy(model)``) R_u = r_u, the person's learned reward: nothing is blocked and every
method returns the same types, so callers (service, TRL, DPO export, generation) need no second code path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.bounds.calibrate import ThresholdCalibration
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
        """The ranking as JSON-safe data: the choice, whether it refused or fell back, and every candidate
        best first with its rewards and violations."""
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


Person = Any  # a user id, a Posterior (anything with a ``mean``) or a raw weight vector


def _broadcast(x: str | Sequence[str] | None, n: int, what: str) -> list[str]:
    """One string per row: a single value (None: empty) repeated, or a sequence of exactly ``n``."""
    if x is None or isinstance(x, str):
        return [x or ""] * n
    out = ["" if v is None else str(v) for v in x]
    if len(out) != n:
        raise ConfigError(
            f"{len(out)} {what} for {n} responses (expected one per response or a single value)"
        )
    return out


def _row_persons(persons: Any) -> bool:
    """True when ``persons`` names one person per row (a sequence of ids), False for a single person (an id, a
    Posterior or a numeric weight vector)."""
    if isinstance(persons, str):
        return False
    if isinstance(persons, np.ndarray):
        return persons.dtype.kind in "OUS"  # ids; a numeric array is one person's weights
    if isinstance(persons, Sequence | pd.Series | pd.Index):
        return all(isinstance(p, str) for p in persons)
    return False


class BoundedPolicy:
    """A personalized model, optionally wrapped by a policy: ``rank``, ``reward`` and ``evaluate`` under universal
    constraints. The one scoring front of the service, the TRL reward function, DPO export and generation.

    ``model`` follows the personalign model contract (``score``; with a policy also ``score_posterior``, ``prior``,
    ``posterior``). ``policy``: a :class:`Policy`, a preset name or a policy file (see :func:`load_policy`), a
    mapping, another BoundedPolicy (its policy and scorers are reused), or None: the personal reward alone,
    nothing blocked, the same return types. ``scorers`` overrides/adds scorers by constraint name; ``items`` (a
    DataFrame with a ``text`` column) binds attribute scorers; ``agreement`` gives population agreement per
    response (consensus bounds). Persons are user ids, :class:`~personalign.models.Posterior` objects or raw weight vectors
    (adversarial ones included). ``allow``: callables (``module:name``) a policy's ``callable`` scorers may name
    beyond the project's own (see :func:`~personalign.bounds.policy.allowed_callables`).
    """

    def __init__(
        self,
        model: Any,
        policy: Policy | str | Path | Mapping[str, Any] | BoundedPolicy | None = None,
        scorers: Mapping[str, Any] | None = None,
        items: Any = None,
        agreement: Agreement | Mapping[str, float] | None = None,
        allow: Iterable[str] | None = None,
    ) -> None:
        if isinstance(policy, BoundedPolicy):
            model = policy.model if model is None else model
            agreement = policy.agreement if agreement is None else agreement
            scorers = {**policy.scorers, **(scorers or {})}
            policy = policy.policy
        if model is None:
            raise ConfigError("BoundedPolicy needs a model (and optionally a policy)")
        self.model = model
        self.policy: Policy | None = None if policy is None else load_policy(policy, allow=allow)
        self._check_dims()
        self.scorers: dict[str, Any] = {}
        self.thresholds: dict[str, float] = {}
        self.calibrations: dict[str, ThresholdCalibration] = {}
        self.choices = {"chosen": 0, "refused": 0, "least_violating": 0}
        for c in self.constraints:
            self.scorers[c.name] = self._scorer(c, (scorers or {}).get(c.name), items)
            self.thresholds[c.name] = self._threshold(c, self.scorers[c.name])
        if agreement is None or isinstance(agreement, Agreement):
            self.agreement = agreement
        else:
            self.agreement = Agreement(agreement)

    def _check_dims(self) -> None:
        """Refuse policy dimension indices the model does not have (the projection would ignore them silently)."""
        if self.policy is None:
            return
        pz = self.policy.personalize
        given = (("dims", [] if pz.dims == "all" else pz.dims), ("fixed", pz.fixed))
        if not any(idx for _, idx in given):
            return
        k = int(np.asarray(self._prior().mean).size)
        for key, idx in given:
            bad = [i for i in idx if i >= k]
            if bad:
                raise ConfigError(
                    f"{self.policy.source}: field 'personalize.{key}': dimension(s) {bad} out of range "
                    f"(the model has {k} personal dimensions, 0..{k - 1})"
                )

    def _scorer(self, c: Any, given: Any, items: Any) -> Any:
        """The constraint's scorer: ``given``, or built from its spec (paths relative to the policy file)."""
        sc = given
        if sc is None:
            base = self.policy.resolve(".") if self.source else None
            sc = build_scorer(c.scorer, base, allow=self.policy.allowed, source=self.source)
        if isinstance(sc, AttributeScorer) and items is not None:
            sc.bind(items)
        return sc

    def _threshold(self, c: Any, sc: Any) -> float:
        if c.threshold != "calibrated":
            return float(c.threshold)
        if c.epsilon is not None:
            where = f"{self.source}: field 'constraints.{c.name}.epsilon'"
            cal = getattr(sc, "calibration_", None)
            if cal is None:
                raise ConfigError(
                    f"{where}: its scorer has no held-out calibration items (a calibration.json beside the "
                    "head, written by `personalign bounds calibrate`); drop epsilon or calibrate the scorer"
                )
            try:
                res = cal.calibrate(c.epsilon, c.confidence, c.direction, c.calibration)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            self.calibrations[c.name] = res
            return res.threshold
        t = getattr(sc, "threshold_", None)
        if t is None:
            raise ConfigError(
                f"{self.source}: field 'constraints.{c.name}.threshold': 'calibrated' needs a scorer "
                f"with a calibrated threshold_; give a number instead"
            )
        return float(t)

    # ------------------------------------------------------------------------------------- the policy
    @property
    def bounded(self) -> bool:
        """True when a policy bounds the reward (False: the personal reward alone)."""
        return self.policy is not None

    @property
    def source(self) -> str | None:
        return self.policy.source if self.policy is not None else None

    @property
    def constraints(self) -> list[Any]:
        return list(self.policy.constraints) if self.policy is not None else []

    @property
    def fallback_mode(self) -> str:
        """What happens when no candidate satisfies the constraints (``refuse`` or ``least_violating``)."""
        return self.policy.fallback.mode if self.policy is not None else "refuse"

    @property
    def fallback_text(self) -> str | None:
        """What the policy answers when it allows no candidate (None without a policy)."""
        return self.policy.fallback.refusal_text if self.policy is not None else None

    def refusal_stats(self) -> dict[str, Any]:
        """How often :meth:`rank` / :meth:`choose_index` served an allowed candidate (``chosen``), refused
        because every candidate violated (``refused``) or served the least violating one, and the refusal share."""
        n = sum(self.choices.values())
        return {**self.choices, "calls": n, "refusal_rate": self.choices["refused"] / n if n else 0.0}

    def _count(self, allowed_any: bool) -> None:
        if self.policy is None or allowed_any:
            self.choices["chosen"] += 1
        elif self.fallback_mode == "refuse":
            self.choices["refused"] += 1
        else:
            self.choices["least_violating"] += 1

    def held_out_rates(self) -> dict[str, dict[str, Any]]:
        """Per constraint whose scorer carries a calibration set with a test split: the achieved ``miss`` and
        ``over_block`` rates at the threshold in use, with Clopper-Pearson intervals, and the promise (``epsilon``,
        ``confidence``, ``calibration``) where the policy states one. Empty without such scorers."""
        out: dict[str, dict[str, Any]] = {}
        for c in self.constraints:
            cal = getattr(self.scorers[c.name], "calibration_", None)
            if cal is None:
                continue
            conf = c.confidence if c.confidence is not None else 0.95
            rates = cal.test_rates(self.thresholds[c.name], c.direction, conf)
            if rates is None:
                continue
            out[c.name] = {
                **rates,
                "epsilon": c.epsilon,
                "confidence": conf,
                "calibration": c.calibration if c.epsilon is not None else "scorer's own threshold",
                "items": cal.meta.get("items", ""),
            }
        return out

    # ------------------------------------------------------------------------------------- constraints
    def check(self, prompts: str | Sequence[str], responses: Sequence[str]) -> dict[str, Any]:
        """Scores and satisfaction per constraint: ``satisfied`` (n,) over blocking constraints, ``violations``
        (names per response), ``n_violations``; without a policy everything is satisfied."""
        responses = [str(r) for r in responses]
        n = len(responses)
        prompts = _broadcast(prompts, n, "prompts")
        scores: dict[str, np.ndarray] = {}
        ok_block = np.ones(n, bool)
        n_viol = np.zeros(n)
        viol: list[list[str]] = [[] for _ in range(n)]
        for c in self.constraints:
            s = np.asarray(self.scorers[c.name].score(prompts, responses), np.float64) if n else np.zeros(0)
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
    def _prior(self) -> Any:
        return self.model.prior()

    def _raw_weights(self, person: Person) -> np.ndarray:
        if isinstance(person, str):
            return np.asarray(self.model.posterior(person).mean, dtype=np.float64)
        if isinstance(person, np.ndarray | list | tuple):
            return np.asarray(person, dtype=np.float64)
        return np.asarray(person.mean, dtype=np.float64)  # a Posterior (or anything with a mean vector)

    def _project(self, W: np.ndarray, prior: Any) -> np.ndarray:
        """The trust-region projection of one or many weight vectors (the identity without a policy)."""
        if self.policy is None:
            return W
        pz = self.policy.personalize
        return project_trust_region(
            W,
            np.asarray(prior.mean, dtype=np.float64),
            np.asarray(prior.cov),
            self.policy.trust_region.rho,
            fixed=pz.fixed,
            personalizable=None if pz.dims == "all" else pz.dims,
        )

    def weights(self, person: Person) -> np.ndarray:
        """The person's parameters after the trust-region projection (as they are without a policy)."""
        w = self._raw_weights(person)
        prior = self._prior()
        m = np.asarray(prior.mean, dtype=np.float64)
        if m.size == 0:
            return w if w.size == 0 else np.zeros(0)
        if w.shape != m.shape:
            raise ConfigError(f"personal parameters have shape {w.shape}, the model's prior has {m.shape}")
        return self._project(w, prior)

    def _rewards(self, W: np.ndarray, prompts: list[str], responses: list[str]) -> np.ndarray:
        """``r = s + g @ w`` for each row of ``W`` (m, K): (m, n) from one featurization when the model has a
        ``basis``, else one ``score_posterior`` per row."""
        W = np.atleast_2d(np.asarray(W, dtype=np.float64))
        if hasattr(self.model, "basis"):
            s, g = self.model.basis(prompts, responses)
            s, g = np.asarray(s, dtype=np.float64), np.asarray(g, dtype=np.float64)
            if W.shape[1] == 0 or g.shape[1] == 0:
                return np.tile(s, (len(W), 1))
            with np.errstate(invalid="ignore", over="ignore"):
                return s[None, :] + W @ g.T
        return np.stack([np.asarray(self.model.score_posterior(w, prompts, responses), float) for w in W])

    def _shrink(
        self, r_u: np.ndarray, r_pop: np.ndarray, prompts: list[str], responses: list[str]
    ) -> np.ndarray:
        """Consensus bounds: ``r_pop + s(agreement) * (r_u - r_pop)`` where the policy enables them."""
        cs = self.policy.consensus if self.policy is not None else None
        if cs is None or not cs.enabled or self.agreement is None:
            return r_u
        sc = consensus_scale(self.agreement(prompts, responses), cs.gamma, cs.min_agreement)
        with np.errstate(invalid="ignore"):
            return r_pop + sc * (r_u - r_pop)

    def personal_reward(
        self, person: Person, prompts: str | Sequence[str], responses: Sequence[str]
    ) -> np.ndarray:
        """r~_u: the projected personal reward, shrunk toward the population's where the population agrees
        (without a policy: the person's learned reward)."""
        responses = [str(r) for r in responses]
        prompts = _broadcast(prompts, len(responses), "prompts")
        if self.policy is None and isinstance(person, str):
            return self._score_users([person] * len(responses), prompts, responses)
        m = np.asarray(self._prior().mean, dtype=np.float64)
        R = self._rewards(np.stack([self.weights(person), m]) if m.size else m[None], prompts, responses)
        return self._shrink(R[0], R[-1], prompts, responses)

    def population_reward(self, prompts: str | Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """The population's reward (the prior mean's) per response."""
        responses = [str(r) for r in responses]
        m = np.asarray(self._prior().mean, dtype=np.float64)
        return self._rewards(m[None], _broadcast(prompts, len(responses), "prompts"), responses)[0]

    def personal_matrix(
        self, persons: np.ndarray, prompts: str | Sequence[str], responses: Sequence[str]
    ) -> np.ndarray:
        """r~ for many raw weight vectors at once: (n_persons, n_responses) (the vectorized path of
        :meth:`personal_reward`, for audits and figures; uses the model's ``basis`` when it has one)."""
        responses = [str(r) for r in responses]
        prompts = _broadcast(prompts, len(responses), "prompts")
        prior = self._prior()
        m = np.asarray(prior.mean, dtype=np.float64)
        W = np.atleast_2d(np.asarray(persons, dtype=np.float64))
        if m.size == 0:
            return np.tile(self._rewards(m[None], prompts, responses)[0], (len(W), 1))
        R = self._rewards(np.vstack([self._project(W, prior), m]), prompts, responses)
        return self._shrink(R[:-1], R[-1][None, :], prompts, responses)

    def _score_users(self, users: list[str], prompts: list[str], responses: list[str]) -> np.ndarray:
        if not hasattr(self.model, "score"):
            raise ConfigError(f"{type(self.model).__name__} has no score(users, prompts, responses) method")
        if not responses:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self.model.score(users, prompts, responses), dtype=np.float64)

    # ------------------------------------------------------------------------------------- public API
    def _bound(self, personal: np.ndarray, satisfied: np.ndarray) -> np.ndarray:
        """The bounded reward of the policy; the personal reward itself without one."""
        return bounded_reward(personal, satisfied) if self.policy is not None else np.array(personal, float)

    def evaluate(
        self,
        persons: Person | Sequence[str],
        prompts: str | Sequence[str],
        responses: Sequence[str],
        population: bool = False,
    ) -> dict[str, Any]:
        """Every row (person, prompt, response) at once: ``reward`` (bounded; the personal reward without a
        policy), ``personal`` (the person's learned reward, no bounds), ``bounded_personal`` (r~_u), ``allowed``
        (satisfies every blocking constraint), ``violations``, ``scores`` (per constraint) and, with
        ``population``, the population's reward. ``persons``: one id per row, or a single person for all rows.

        The constraint check sees only (prompt, response), so it runs once for all rows; the personal part runs
        once per distinct person.
        """
        responses = [str(r) for r in responses]
        n = len(responses)
        prompts_l = _broadcast(prompts, n, "prompts")
        chk = self.check(prompts_l, responses)
        out: dict[str, Any] = {}
        if _row_persons(persons) or isinstance(persons, str):
            users = _broadcast(persons, n, "users")
            personal = self._score_users(users, prompts_l, responses)
            tilde = personal if self.policy is None else self._per_person(users, prompts_l, responses)
            if population:
                out["population"] = self.population_reward(prompts_l, responses)
        else:  # one person object: raw, projected and population rewards from one featurization
            m = np.asarray(self._prior().mean, dtype=np.float64)
            if not n:
                personal = r_proj = r_pop = np.zeros(0, dtype=np.float64)
            elif m.size:
                W = np.stack([self._raw_weights(persons), self.weights(persons), m])
                personal, r_proj, r_pop = self._rewards(W, prompts_l, responses)
            else:
                personal = r_proj = r_pop = self._rewards(m[None], prompts_l, responses)[0]
            tilde = personal if self.policy is None else self._shrink(r_proj, r_pop, prompts_l, responses)
            if population:
                out["population"] = r_pop
        sat = np.asarray(chk["satisfied"], dtype=bool)
        return {
            "reward": self._bound(tilde, sat),
            "personal": personal,
            "bounded_personal": np.array(tilde, dtype=np.float64),
            "allowed": sat,
            "violations": [list(v) for v in chk["violations"]],
            "n_violations": chk["n_violations"],
            "scores": chk["scores"],
            **out,
        }

    def _per_person(self, users: list[str], prompts: list[str], responses: list[str]) -> np.ndarray:
        tilde = np.zeros(len(responses), dtype=np.float64)
        users_arr = np.asarray(users, dtype=object)
        for u in dict.fromkeys(users):
            idx = np.flatnonzero(users_arr == u)
            tilde[idx] = self.personal_reward(u, [prompts[i] for i in idx], [responses[i] for i in idx])
        return tilde

    def __call__(
        self, persons: Person | Sequence[str], prompts: str | Sequence[str], responses: Sequence[str]
    ) -> np.ndarray:
        """The bounded reward per row (the personal reward without a policy)."""
        return self.evaluate(persons, prompts, responses)["reward"]

    def choose_index(self, evaluation: Mapping[str, Any]) -> int:
        """Index of the best allowed row of one candidate set (an :meth:`evaluate` result), or -1 when the policy
        allows none and refuses (``least_violating``: the fewest violations, then the best reward)."""
        allowed = np.asarray(evaluation["allowed"], dtype=bool)
        r = np.asarray(evaluation["reward"], dtype=np.float64)
        if not allowed.any():
            self._count(False)
            if self.fallback_mode == "least_violating" and len(r):
                nv = np.asarray([len(v) for v in evaluation["violations"]], dtype=np.float64)
                return int(np.lexsort((-r, nv))[0])
            return -1
        self._count(True)
        return int(np.argmax(np.where(allowed, r, -np.inf)))

    def reward(
        self, person: Person, prompt: str | Sequence[str], response: str | Sequence[str]
    ) -> np.ndarray | float:
        """Bounded reward R_u in [0, 1] (violating) or [2, 3] (satisfying), the personal reward without a policy;
        a single response gives a float."""
        single = isinstance(response, str)
        responses = [response] if single else list(response)
        chk = self.check(prompt, responses)
        out = self._bound(self.personal_reward(person, prompt, responses), chk["satisfied"])
        return float(out[0]) if single else out

    def rank(self, person: Person, prompt: str, candidates: Sequence[str]) -> Ranking:
        """Candidates best first; satisfying ones always above violating ones. If none satisfies: the policy's
        fallback (``refuse``: the choice is the refusal text; ``least_violating``: the top one, flagged). Without
        a policy: by the personal reward (ties by position)."""
        cands = [str(c) for c in candidates]
        chk = self.check(prompt, cands)
        personal = self.personal_reward(person, prompt, cands) if cands else np.zeros(0)
        sat = chk["satisfied"]
        order = bounded_order(personal, sat, chk["n_violations"])
        fallback = self.policy is not None and not bool(sat.any())
        refused = fallback and self.fallback_mode == "refuse"
        self._count(not fallback)
        notes = [f"no candidate satisfies the constraints ({self.fallback_mode})"] if fallback else []
        choice = (self.fallback_text or "") if refused or not cands else cands[int(order[0])]
        return Ranking(
            candidates=cands,
            order=order,
            bounded=self._bound(personal, sat),
            personal=personal,
            satisfied=sat,
            violations=chk["violations"],
            scores=chk["scores"],
            fallback=fallback,
            choice=choice,
            refused=refused,
            notes=notes,
        )
