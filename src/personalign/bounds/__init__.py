"""Bounded personalization: universal constraints with a guarantee, trust regions, consensus-aware bounds, monitors."""

from personalign.bounds.bounded import OFFSET, BoundedPolicy, Ranking, bounded_order, bounded_reward, squash
from personalign.bounds.calibrate import CalibrationSet, calibrate_threshold, held_out_rates
from personalign.bounds.monitors import (
    FilterBubbleMonitor,
    LockInMonitor,
    calibrate_flag_threshold,
    decay_weights,
    decayed_adapt,
    influence_weights,
    load_probes,
    mmr_rerank,
    reset_person,
    sycophancy_check,
)
from personalign.bounds.policy import Policy, list_policies, load_policy, policy_from_dict
from personalign.bounds.scorers import (
    AttributeScorer,
    CallableScorer,
    ConsensusScorer,
    HarmlessnessHead,
    RegexScorer,
    build_scorer,
)
from personalign.bounds.trust import Agreement, agreement_table, consensus_scale, project_trust_region

__all__ = [
    "OFFSET",
    "Agreement",
    "AttributeScorer",
    "BoundedPolicy",
    "CalibrationSet",
    "CallableScorer",
    "ConsensusScorer",
    "FilterBubbleMonitor",
    "HarmlessnessHead",
    "LockInMonitor",
    "Policy",
    "Ranking",
    "RegexScorer",
    "agreement_table",
    "bounded_order",
    "bounded_reward",
    "build_scorer",
    "calibrate_flag_threshold",
    "calibrate_threshold",
    "consensus_scale",
    "decay_weights",
    "decayed_adapt",
    "held_out_rates",
    "influence_weights",
    "list_policies",
    "load_policy",
    "load_probes",
    "mmr_rerank",
    "policy_from_dict",
    "project_trust_region",
    "reset_person",
    "squash",
    "sycophancy_check",
]
