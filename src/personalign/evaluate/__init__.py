"""personalign.evaluate: the evaluation protocol, metrics, baselines and reports (personalized against aggregated)."""

from personalign.evaluate.metrics import interval, pair_metrics, paired_difference, per_person_accuracy
from personalign.evaluate.protocol import EvalConfig, evaluate, run_seed
from personalign.evaluate.report import write_report

__all__ = [
    "EvalConfig",
    "evaluate",
    "interval",
    "pair_metrics",
    "paired_difference",
    "per_person_accuracy",
    "run_seed",
    "write_report",
]
