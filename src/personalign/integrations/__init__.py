"""Plug personal rewards into LLM alignment: TRL reward functions, personalized DPO data, best-of-N with a local
model, portable reward artifacts, DistributedDataParallel training.

All of them score through :class:`personalign.bounds.BoundedPolicy` (with or without a policy), so they apply the
bounds the same way. Submodules import their heavy dependencies (transformers, trl, torch.distributed) only when
used.
"""

from personalign.bounds.bounded import BoundedPolicy
from personalign.integrations.dpo import load_pairs, personalized_pairs, read_candidates, write_pairs
from personalign.integrations.export import export_reward
from personalign.integrations.generate import BestOfN, LocalGenerator, best_of_n, generate_best_of_n
from personalign.integrations.trl import reward_function

#: The integrations' former scoring front, now the same class as :class:`BoundedPolicy` (``PersonalReward(model,
#: policy)`` keeps working: ``policy`` may be a BoundedPolicy, a preset name, a file or None).
PersonalReward = BoundedPolicy

__all__ = [
    "BestOfN",
    "BoundedPolicy",
    "LocalGenerator",
    "PersonalReward",
    "best_of_n",
    "export_reward",
    "generate_best_of_n",
    "load_pairs",
    "personalized_pairs",
    "read_candidates",
    "reward_function",
    "write_pairs",
]
