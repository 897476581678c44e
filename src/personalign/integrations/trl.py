"""TRL reward functions: a personalized (and bounded) reward that plugs into ``reward_funcs`` of GRPOTrainer.

TRL calls a reward function as ``f(prompts=..., completions=..., completion_ids=..., **columns)`` where every other
dataset column arrives as a keyword list aligned with the completions (the prompt repeated per generation). So a
dataset with a ``user_id`` column gives each completion its person; the function returns one float per completion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from personalign.bounds.bounded import BoundedPolicy
from personalign.data.core import POPULATION_USER
from personalign.errors import ConfigError


def message_text(x: Any, roles: tuple[str, ...] | None = None) -> str:
    """Plain text of a TRL prompt or completion: a string as it is, or chat messages (list of role/content dicts).

    For messages, ``roles`` selects which ones count (None: all); contents are joined by blank lines.
    """
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        x = [x]
    if isinstance(x, list | tuple):
        parts = []
        for m in x:
            if isinstance(m, dict):
                if roles is not None and m.get("role") not in roles:
                    continue
                c = m.get("content", "")
                if isinstance(c, list):  # multimodal content blocks: keep the text blocks
                    c = " ".join(str(b.get("text", "")) for b in c if isinstance(b, dict))
                parts.append(str(c))
            else:
                parts.append(str(m))
        return "\n\n".join(p for p in parts if p)
    return str(x)


def prompt_text(prompt: Any) -> str:
    """The prompt a reward model judges: the last user turn of a conversation (system messages, which may carry
    the person's conditioning, are not part of what is judged); a string prompt as it is."""
    if isinstance(prompt, list | tuple) and prompt and isinstance(prompt[0], dict):
        users = [m for m in prompt if m.get("role") == "user"]
        return message_text(users[-1:] if users else list(prompt))
    return message_text(prompt)


def completion_text(completion: Any) -> str:
    """The answer being judged: a string, or the assistant messages of a conversational completion."""
    if isinstance(completion, list | tuple) and completion and isinstance(completion[0], dict):
        text = message_text(completion, roles=("assistant",))
        return text if text else message_text(completion)
    return message_text(completion)


def reward_function(
    model: Any,
    policy: Any = None,
    user_column: str = "user_id",
    default_user: str | None = None,
    scale: float = 1.0,
    name: str | None = None,
) -> Callable[..., list[float]]:
    """A TRL reward function scoring each completion by its person's learned reward, bounded by ``policy``.

    ``r = scale * R_u(x, y)`` where ``R_u`` is the policy's bounded reward (the model's ``score`` without a policy),
    ``u`` the value of ``user_column`` in the completion's row, ``x`` the prompt's last user turn, ``y`` the completion.
    ``policy``: a preset name (``rules``, ``default``, ``synthetic``), a policy file, a :class:`~personalign.bounds.Policy` or a
    :class:`~personalign.bounds.BoundedPolicy` (see :func:`personalign.bounds.load_policy`); None: unbounded.
    Rows without the column use ``default_user`` (None: the column is required; ``POPULATION_USER`` scores with the
    population reward). Works with standard (strings) and conversational (message lists) datasets. When TRL passes
    ``log_metric``, the share of completions violating a universal constraint is logged as
    ``personalign/violation_rate``.
    """
    reward = BoundedPolicy(model, policy)

    def personalign_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        n = len(completions)
        users = kwargs.get(user_column)
        if users is None:
            if default_user is None:
                raise ConfigError(
                    f"the reward function needs the person of each row: add a '{user_column}' column to the "
                    f"dataset (TRL passes dataset columns to reward functions), or set default_user "
                    f"(e.g. '{POPULATION_USER}' for the population reward)"
                )
            users = [default_user] * n
        users = [(default_user or POPULATION_USER) if u is None else str(u) for u in users]
        if len(users) != n or len(prompts) != n:
            raise ConfigError(f"got {len(prompts)} prompts, {len(users)} persons for {n} completions")
        d = reward.evaluate(
            users, [prompt_text(p) for p in prompts], [completion_text(c) for c in completions]
        )
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and reward.bounded and n:
            log_metric("personalign/violation_rate", float(1.0 - np.mean(d["allowed"])))
        return [float(scale * r) for r in d["reward"]]

    personalign_reward.__name__ = name or ("personalign_bounded" if reward.bounded else "personalign")
    personalign_reward.__qualname__ = personalign_reward.__name__
    personalign_reward.reward = reward  # type: ignore[attr-defined]  # for inspection
    return personalign_reward
