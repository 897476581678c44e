"""One scoring front for the integrations: a personalized model, optionally inside a bounded policy.

``PersonalReward(model, policy)`` gives, for rows (person, prompt, response), the person's raw learned reward, the
bounded reward the policy assigns (equal to the raw one without a policy), whether each response satisfies the
universal constraints, and which constraints it violates. Every integration (TRL reward functions, DPO pairs,
best-of-N, exported artifacts) goes through it, so all of them apply the policy the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from personalign.errors import ConfigError


def _listify(x: str | Sequence[str], n: int, what: str) -> list[str]:
    if isinstance(x, str) or x is None:
        return [("" if x is None else x)] * n
    out = ["" if v is None else str(v) for v in x]
    if len(out) != n:
        raise ConfigError(
            f"{len(out)} {what} for {n} responses (expected one per response or a single value)"
        )
    return out


class PersonalReward:
    """Rewards of a personalized model, bounded by a policy when one is given.

    ``model``: any personalign model (``score(users, prompts, responses)``); ``policy``: a
    :class:`personalign.bounds.BoundedPolicy` (or None). A bounded policy ranks every response that satisfies
    the universal constraints above every response that violates them, for every person.
    """

    def __init__(self, model: Any, policy: Any = None) -> None:
        if model is None and policy is None:
            raise ConfigError("PersonalReward needs a model (and optionally a bounded policy)")
        if model is None:
            model = getattr(policy, "model", None)
        if not hasattr(model, "score"):
            raise ConfigError(f"{type(model).__name__} has no score(users, prompts, responses) method")
        self.model = model
        self.policy = policy

    @property
    def fallback_text(self) -> str | None:
        """What the policy answers when it allows no candidate (None without a policy)."""
        pol = getattr(self.policy, "policy", None)
        return pol.fallback.refusal_text if pol is not None else None

    @property
    def fallback_mode(self) -> str:
        pol = getattr(self.policy, "policy", None)
        return pol.fallback.mode if pol is not None else "refuse"

    def personal(
        self, users: str | Sequence[str], prompts: str | Sequence[str], responses: Sequence[str]
    ) -> np.ndarray:
        """The person's learned reward r_u(x, y), no bounds."""
        responses = [str(r) for r in responses]
        n = len(responses)
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        return np.asarray(
            self.model.score(_listify(users, n, "users"), _listify(prompts, n, "prompts"), responses),
            dtype=np.float64,
        )

    def evaluate(
        self, users: str | Sequence[str], prompts: str | Sequence[str], responses: Sequence[str]
    ) -> dict[str, Any]:
        """``{"reward", "personal", "allowed", "violations"}`` for every row (arrays of length n)."""
        responses = [str(r) for r in responses]
        n = len(responses)
        users_l, prompts_l = _listify(users, n, "users"), _listify(prompts, n, "prompts")
        personal = self.personal(users_l, prompts_l, responses)
        if self.policy is None:
            return {
                "reward": personal.copy(),
                "personal": personal,
                "allowed": np.ones(n, dtype=bool),
                "violations": [[] for _ in range(n)],
            }
        bounded = _policy_evaluate(self.policy, users_l, prompts_l, responses)
        return {"personal": personal, **bounded}

    def __call__(
        self, users: str | Sequence[str], prompts: str | Sequence[str], responses: Sequence[str]
    ) -> np.ndarray:
        """The bounded reward (the personal reward without a policy)."""
        return self.evaluate(users, prompts, responses)["reward"]

    def choose_index(self, d: dict[str, Any]) -> int:
        """Index of the best allowed row of one candidate set, or -1 when the policy allows none."""
        allowed = np.asarray(d["allowed"], dtype=bool)
        if not allowed.any():
            if self.fallback_mode == "least_violating":
                nv = np.asarray([len(v) for v in d["violations"]], dtype=np.float64)
                r = np.asarray(d["reward"], dtype=np.float64)
                return int(np.lexsort((-r, nv))[0])  # fewest violations, then the best reward
            return -1
        r = np.where(allowed, np.asarray(d["reward"], dtype=np.float64), -np.inf)
        return int(np.argmax(r))


def _policy_evaluate(
    policy: Any, users: list[str], prompts: list[str], responses: list[str]
) -> dict[str, Any]:
    """Bounded rewards and constraint checks from a :class:`~personalign.bounds.BoundedPolicy`.

    The constraint check sees only (prompt, response), so it runs once for all rows; the personal part (trust
    region, consensus bounds) runs once per distinct person. ``R = OFFSET * satisfied + sigma(r~_u)``.
    """
    if not (hasattr(policy, "check") and hasattr(policy, "personal_reward")):
        raise ConfigError(
            f"{type(policy).__name__} is not a BoundedPolicy (expected check() and personal_reward())"
        )
    from personalign.bounds.bounded import bounded_reward

    n = len(responses)
    chk = policy.check(prompts, responses)
    sat = np.asarray(chk["satisfied"], dtype=bool)
    tilde = np.zeros(n, dtype=np.float64)
    users_arr = np.asarray(users, dtype=object)
    for u in dict.fromkeys(users):
        idx = np.flatnonzero(users_arr == u)
        tilde[idx] = policy.personal_reward(u, [prompts[i] for i in idx], [responses[i] for i in idx])
    return {
        "reward": bounded_reward(tilde, sat),
        "bounded_personal": tilde,
        "allowed": sat,
        "violations": [list(v) for v in chk["violations"]],
    }
