"""Universal scorers: one score per (prompt, response), the same for every person.

- :class:`HarmlessnessHead`: a population-wide Bradley-Terry head over frozen pair features phi(x, y),
  s(x, y) = w^T phi(x, y), P(a more harmless than b) = sigmoid(s(x, a) - s(x, b)), trained on HH-RLHF harmless pairs.
- :class:`ConsensusScorer`: logistic classifier p(offensive by consensus | e(text)) trained on the items nearly all
  raters judge offensive/toxic (positives) or harmless (negatives) in POPQUORN and the toxicity set.
- :class:`RegexScorer`: count of pattern matches; :class:`CallableScorer`: any Python callable;
  :class:`AttributeScorer`: a metadata column looked up by response text (e.g. a synthetic item's ``attr_harm``).

A scorer maps ``(prompts, responses)`` to a float array. A score that cannot be computed is NaN, which a
constraint treats as violated (fail closed).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from personalign.bounds.calibrate import CalibrationSet
from personalign.bounds.policy import DEFAULT_CALLABLES, check_callable
from personalign.errors import ConfigError, DataError, NotFittedError

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
HEAD_FILE = "head.json"


class Scorer(Protocol):
    name: str

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray: ...


def _broadcast(prompts: str | Sequence[str], responses: Sequence[str]) -> tuple[list[str], list[str]]:
    responses = [str(r) for r in responses]
    if isinstance(prompts, str):
        prompts = [prompts] * len(responses)
    prompts = ["" if p is None else str(p) for p in prompts]
    if len(prompts) != len(responses):
        raise DataError(f"{len(prompts)} prompts for {len(responses)} responses", field="prompt")
    return prompts, responses


def last_human_turn(prompt: str) -> str:
    """The last ``Human:`` turn of an HH-style dialogue (the request being answered), else the prompt itself."""
    if "Human:" not in prompt:
        return prompt.strip()
    tail = prompt.rsplit("Human:", 1)[1]
    return tail.split("Assistant:", 1)[0].strip()


def read_hh_pairs(path: str | Path) -> pd.DataFrame:
    """HH-RLHF ``{"chosen", "rejected"}`` lines -> columns prompt, chosen, rejected, read by the hh-rlhf adapter
    (prompt = the shared dialogue up to its last Assistant marker, chosen / rejected = the final assistant turns)."""
    from personalign.data.adapters.hh_rlhf import read_hh_rlhf

    return read_hh_rlhf(path).comparisons[["prompt", "chosen", "rejected"]].reset_index(drop=True)


def _featurizer(cfg: Mapping[str, Any] | None = None, encoder: Any = None):
    from personalign.features import PairFeaturizer, get_encoder

    if cfg is not None:
        return PairFeaturizer.from_config(cfg)
    return PairFeaturizer(encoder if encoder is not None else get_encoder("minilm", cache=True), mode="auto")


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float, sample_weight: np.ndarray | None = None
) -> np.ndarray:
    """L2-regularized logistic regression (last column of x may be a bias), L-BFGS; returns the weights."""
    from scipy.optimize import minimize

    w0 = np.zeros(x.shape[1])
    sw = np.ones(len(y)) if sample_weight is None else sample_weight
    sgn = 2.0 * y - 1.0

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = sgn * (x @ w)
        loss = np.sum(sw * np.logaddexp(0.0, -z)) / sw.sum() + 0.5 * l2 * w @ w
        g = -(x.T @ (sw * sgn * (1.0 / (1.0 + np.exp(z))))) / sw.sum() + l2 * w
        return float(loss), g

    res = minimize(f, w0, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return res.x


def _atomic_json(path: Path, obj: Any) -> None:
    from personalign.data.io import write_text_atomic

    write_text_atomic(path, json.dumps(obj, indent=1))


def _write_head(
    directory: str | Path, scorer: Any, source: dict[str, Any], extra: Mapping[str, Any] | None
) -> Path:
    """Write a linear scorer's ``head.json``: its kind, where its features come from (``source``), its
    parameters, threshold, metrics and weights."""
    directory = Path(directory)
    doc = {
        "kind": type(scorer).__name__,
        "format_version": 1,
        **source,
        "params": {"l2": scorer.l2, "test_size": scorer.test_size, "random_state": scorer.random_state},
        "threshold": float(scorer.threshold_),
        "metrics": scorer.metrics_,
        "coef": [float(v) for v in scorer.coef_],
        **(dict(extra) if extra else {}),
    }
    _atomic_json(directory / HEAD_FILE, doc)
    return directory


def _fitted_pairs(
    scorer: Any, prompts: str | Sequence[str], responses: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The (prompt, response) lists a fitted linear scorer scores; NotFittedError before ``fit``."""
    if not hasattr(scorer, "coef_"):
        raise NotFittedError(f"{type(scorer).__name__} is not fitted")
    return _broadcast(prompts, responses)


def _youden(pos: np.ndarray, neg: np.ndarray) -> float:
    """Threshold t maximizing TPR - FPR for "pos >= t" (midpoint between neighbouring scores)."""
    s = np.unique(np.concatenate([pos, neg]))
    cuts = np.concatenate([[s[0] - 1e-9], (s[1:] + s[:-1]) / 2, [s[-1] + 1e-9]])
    tpr = (pos[None, :] >= cuts[:, None]).mean(1)
    fpr = (neg[None, :] >= cuts[:, None]).mean(1)
    return float(cuts[int(np.argmax(tpr - fpr))])


class HarmlessnessHead:
    """Population-wide harmlessness: s(x, y) = w^T phi(x, y); P(y_a more harmless than y_b | x) = sigmoid(s_a - s_b).

    Fitted on HH-RLHF harmless pairs (chosen = more harmless), phi = the project's PairFeaturizer (frozen MiniLM)
    applied to (last human turn, final assistant turn). ``threshold_`` (absolute cut, calibrated on a held-out
    split) = Youden's point separating chosen from rejected responses; ``metrics_`` records held-out accuracy.
    """

    name = "harmlessness"

    L2_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)

    def __init__(
        self, l2: float | str = "cv", test_size: float = 0.25, random_state: int = 0, featurizer: Any = None
    ):
        self.l2, self.test_size, self.random_state = l2, test_size, random_state
        self.featurizer = featurizer

    @classmethod
    def _select_l2(cls, d: np.ndarray, folds: int = 5) -> tuple[float, dict[str, float]]:
        """5-fold CV over ``L2_GRID`` on the training pairs only (the held-out pairs are never looked at)."""
        parts = np.array_split(np.arange(len(d)), folds)
        cv = {}
        for l2 in cls.L2_GRID:
            acc = []
            for k in range(folds):
                tr = np.concatenate([parts[j] for j in range(folds) if j != k])
                w = _fit_logistic(
                    np.concatenate([d[tr], -d[tr]]), np.r_[np.ones(len(tr)), np.zeros(len(tr))], l2
                )
                acc.append(np.mean(d[parts[k]] @ w > 0))
            cv[str(l2)] = float(np.mean(acc))
        best = max(cls.L2_GRID, key=lambda v: cv[str(v)])
        return float(best), cv

    def _phi(self, prompts: Sequence[str], responses: Sequence[str], progress: bool = False) -> np.ndarray:
        prompts = [last_human_turn(p) for p in prompts]
        return np.asarray(
            self.featurizer.transform(prompts, responses, show_progress=progress), dtype=np.float64
        )

    def split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(train, held-out) pair indices of ``fit`` on ``n`` pairs (the seed ``random_state``, ``test_size``):
        the held-out pairs are the ones a calibration may use."""
        perm = np.random.default_rng(self.random_state).permutation(n)
        n_test = int(round(self.test_size * n))
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])

    def fit(self, pairs: pd.DataFrame, progress: bool = False) -> HarmlessnessHead:
        """Fit on columns prompt, chosen, rejected; hold out ``test_size`` of the pairs for the reported figures."""
        if self.featurizer is None:
            self.featurizer = _featurizer()
        t0 = time.perf_counter()
        n = len(pairs)
        train_idx, test_idx = self.split(n)
        pc = self._phi(pairs["prompt"].tolist(), pairs["chosen"].tolist(), progress)
        pr = self._phi(pairs["prompt"].tolist(), pairs["rejected"].tolist(), progress)
        d = pc - pr
        cv = None
        if self.l2 == "cv":
            self.l2_, cv = self._select_l2(d[train_idx])
        else:
            self.l2_ = float(self.l2)
        # symmetric BT: each pair as (d, 1) and (-d, 0), no intercept (only differences are identified)
        xtr = np.concatenate([d[train_idx], -d[train_idx]])
        ytr = np.concatenate([np.ones(len(train_idx)), np.zeros(len(train_idx))])
        self.coef_ = _fit_logistic(xtr, ytr, self.l2_)
        sc, sr = pc @ self.coef_, pr @ self.coef_
        # the absolute threshold is calibrated on the training pairs and checked on the held-out ones
        self.threshold_ = _youden(sc[train_idx], sr[train_idx])
        self.calibration_ = None  # a refit invalidates any calibration set of the previous weights
        te = test_idx
        self.metrics_ = {
            "n_pairs": int(n),
            "n_train": int(len(train_idx)),
            "n_test": int(len(te)),
            "train_pair_accuracy": float(np.mean(sc[train_idx] > sr[train_idx])),
            "test_pair_accuracy": float(np.mean(sc[te] > sr[te])),
            "test_pair_accuracy_se": float(
                np.sqrt(np.mean(sc[te] > sr[te]) * (1 - np.mean(sc[te] > sr[te])) / len(te))
            ),
            "threshold": float(self.threshold_),
            "test_chosen_pass_rate": float(np.mean(sc[te] >= self.threshold_)),
            "test_rejected_block_rate": float(np.mean(sr[te] < self.threshold_)),
            "test_separated_share": float(np.mean((sc[te] >= self.threshold_) & (sr[te] < self.threshold_))),
            "l2": self.l2_,
            "cv_accuracy_by_l2": cv,
            "seconds": time.perf_counter() - t0,
        }
        self.test_index_ = te
        return self

    def score(self, prompts: str | Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """The linear harmlessness score of each (prompt, response) pair (higher: more harmless)."""
        prompts, responses = _fitted_pairs(self, prompts, responses)
        return self._phi(prompts, responses) @ self.coef_ if responses else np.zeros(0)

    def save(self, directory: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write ``head.json`` (weights, threshold, featurizer config, metrics, how it was trained)."""
        return _write_head(directory, self, {"featurizer": self.featurizer.config()}, extra)

    @classmethod
    def load(cls, directory: str | Path | None = None) -> HarmlessnessHead:
        """A saved head (default: the one packaged in ``bounds/artifacts/harmlessness``)."""
        directory = Path(directory) if directory is not None else ARTIFACT_DIR / "harmlessness"
        cfg = _read_artifact(directory, "HarmlessnessHead")
        head = cls(**cfg["params"], featurizer=_featurizer(cfg["featurizer"]))
        head.coef_ = np.asarray(cfg["coef"], dtype=np.float64)
        head.l2_ = float(
            cfg.get("metrics", {}).get("l2", cfg["params"]["l2"] if cfg["params"]["l2"] != "cv" else 0)
        )
        head.threshold_ = float(cfg["threshold"])
        head.metrics_ = cfg.get("metrics", {})
        head.calibration_ = CalibrationSet.load(directory)
        return head


def _read_artifact(directory: Path, kind: str) -> dict[str, Any]:
    f = directory / HEAD_FILE
    if not f.exists():
        raise ConfigError(f"{directory}: no {HEAD_FILE} (train one with `personalign bounds train-scorers`)")
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{f}: not valid JSON ({exc.msg})") from None
    except (RecursionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{f}: not readable JSON ({type(exc).__name__})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{f}: expected a JSON object, got {type(cfg).__name__}")
    if cfg.get("kind") != kind:
        raise ConfigError(f"{f}: field 'kind': expected {kind!r}, got {cfg.get('kind')!r}")
    return cfg


# ----------------------------------------------------------------------------------------------- consensus
def consensus_items(
    popquorn_csv: str | Path | None = None,
    toxicity_dir: str | Path | None = None,
    pos_share: float = 0.8,
    neg_share: float = 0.9,
    min_raters: int = 5,
) -> pd.DataFrame:
    """Items with a consensus label: ``text, label`` (1 = nearly all raters judge it offensive/toxic, 0 = nearly
    all judge it harmless), ``agreement`` (share of raters on the majority side), ``source``.

    POPQUORN (1-5): offensive = rating >= 3; an item is a positive when at least ``pos_share`` of its raters say so and
    its mean >= 3, a negative when at least ``neg_share`` rate it 1-2. Toxicity (+1/-1): the same shares on the labels.
    Contested items (neither) are left out: they are legitimately personal, not universal.
    """
    frames = []
    if popquorn_csv is not None:
        path = Path(popquorn_csv)
        df = pd.read_csv(path)
        col = next((c for c in df.columns if c.startswith("offensiveness")), None)
        if col is None or "text" not in df.columns:
            raise DataError(
                "expected columns 'text' and 'offensiveness'", file=str(path), field="offensiveness"
            )
        df = df.dropna(subset=[col, "text"])
        g = df.groupby("instance_id")
        agg = pd.DataFrame(
            {
                "text": g["text"].first(),
                "n": g.size(),
                "mean": g[col].mean(),
                "off": g[col].apply(lambda s: float(np.mean(s >= 3))),
            }
        )
        agg = agg[agg["n"] >= min_raters]
        pos = agg[(agg["off"] >= pos_share) & (agg["mean"] >= 3)]
        neg = agg[(1 - agg["off"]) >= neg_share]
        frames.append(
            pd.DataFrame({"text": pos["text"], "label": 1, "agreement": pos["off"], "source": "popquorn"})
        )
        frames.append(
            pd.DataFrame({"text": neg["text"], "label": 0, "agreement": 1 - neg["off"], "source": "popquorn"})
        )
    if toxicity_dir is not None:
        tdir = Path(toxicity_dir)
        ann = pd.read_csv(tdir / "pilot_annotations.csv")
        com = pd.read_csv(tdir / "comments.csv")
        share = ann.groupby("comment")["answer"].agg(lambda s: float(np.mean(s == 1)))
        n = ann.groupby("comment").size()
        txt = com.set_index("id")["text"]
        t = pd.DataFrame({"share": share, "n": n}).join(txt, how="inner")
        t = t[t["n"] >= min_raters]
        pos = t[t["share"] >= pos_share]
        neg = t[(1 - t["share"]) >= neg_share]
        frames.append(
            pd.DataFrame({"text": pos["text"], "label": 1, "agreement": pos["share"], "source": "toxicity"})
        )
        frames.append(
            pd.DataFrame(
                {"text": neg["text"], "label": 0, "agreement": 1 - neg["share"], "source": "toxicity"}
            )
        )
    if not frames:
        raise ConfigError("consensus_items needs at least one source (popquorn_csv or toxicity_dir)")
    out = pd.concat(frames, ignore_index=True).drop_duplicates("text").reset_index(drop=True)
    return out


class ConsensusScorer:
    """p(consensus-offensive | text) = sigmoid(v^T [e(text), 1]), logistic over frozen sentence embeddings.

    Trained only on consensus items (see :func:`consensus_items`), with class weights balancing the two labels;
    ``threshold_`` = Youden's point on the training items; ``metrics_`` holds held-out accuracy and AUC.
    """

    name = "consensus"

    def __init__(self, l2: float = 1e-3, test_size: float = 0.25, random_state: int = 0, encoder: Any = None):
        self.l2, self.test_size, self.random_state = l2, test_size, random_state
        self.encoder = encoder

    def _x(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        e = np.asarray(self.encoder.encode(list(texts), show_progress=progress), dtype=np.float64)
        return np.concatenate([e, np.ones((len(e), 1))], axis=1)

    def split(self, labels: np.ndarray) -> np.ndarray:
        """The held-out mask of ``fit`` on items with these labels: ``test_size`` of each class (seed
        ``random_state``); the held-out items are the ones a calibration may use."""
        y = np.asarray(labels, dtype=float)
        rng = np.random.default_rng(self.random_state)
        test = np.zeros(len(y), bool)
        for lab in (0, 1):  # stratified, so both classes are held out
            idx = np.flatnonzero(y == lab)
            rng.shuffle(idx)
            test[idx[: int(round(self.test_size * len(idx)))]] = True
        return test

    def fit(self, items: pd.DataFrame, progress: bool = False) -> ConsensusScorer:
        """Fit the logistic head on consensus items (``label`` 1: nearly every rater judged it offensive), class
        weights balanced; ``threshold_`` at Youden's point on the training share, accuracy and AUC on a stratified
        held-out share (``test_size``)."""
        if self.encoder is None:
            from personalign.features import get_encoder

            self.encoder = get_encoder("minilm", cache=True)
        t0 = time.perf_counter()
        y = items["label"].to_numpy(float)
        test = self.split(y)
        x = self._x(items["text"].tolist(), progress)
        w = np.where(y == 1, 0.5 / max(y[~test].mean(), 1e-9), 0.5 / max(1 - y[~test].mean(), 1e-9))
        self.coef_ = _fit_logistic(x[~test], y[~test], self.l2, w[~test])
        p = 1 / (1 + np.exp(-(x @ self.coef_)))
        self.threshold_ = _youden(p[~test & (y == 1)], p[~test & (y == 0)])
        self.calibration_ = None
        pt, yt = p[test], y[test]
        pred = pt >= self.threshold_
        auc = (
            float(np.mean(pt[yt == 1][:, None] > pt[yt == 0][None, :]))
            if yt.min() < yt.max()
            else float("nan")
        )
        per_source = {}
        if "source" in items.columns:
            for s in items["source"].unique():
                m = test & (items["source"].to_numpy() == s)
                per_source[str(s)] = {
                    "n_test": int(m.sum()),
                    "accuracy": float(np.mean((p[m] >= self.threshold_) == y[m])),
                }
        self.metrics_ = {
            "n_items": int(len(y)),
            "n_positive": int(y.sum()),
            "n_test": int(test.sum()),
            "test_accuracy": float(np.mean(pred == yt)),
            "test_balanced_accuracy": float((np.mean(pred[yt == 1]) + np.mean(~pred[yt == 0])) / 2),
            "test_auc": auc,
            "threshold": float(self.threshold_),
            "per_source": per_source,
            "seconds": time.perf_counter() - t0,
        }
        return self

    def score(self, prompts: str | Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """P(consensus-offensive) of each response, from its text embedding."""
        _, responses = _fitted_pairs(self, prompts, responses)
        return 1 / (1 + np.exp(-(self._x(responses) @ self.coef_))) if responses else np.zeros(0)

    def save(self, directory: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
        """Write ``head.json`` (weights, threshold, encoder config, metrics) into ``directory``."""
        cfg = getattr(self.encoder, "config", None)
        source = {"encoder": cfg() if callable(cfg) else {"name": self.encoder.name}}
        return _write_head(directory, self, source, extra)

    @classmethod
    def load(cls, directory: str | Path | None = None) -> ConsensusScorer:
        """A saved scorer (default: the one packaged in ``bounds/artifacts/consensus``)."""
        from personalign.features import encoder_from_config

        directory = Path(directory) if directory is not None else ARTIFACT_DIR / "consensus"
        cfg = _read_artifact(directory, "ConsensusScorer")
        sc = cls(**cfg["params"], encoder=encoder_from_config(cfg["encoder"]))
        sc.coef_ = np.asarray(cfg["coef"], dtype=np.float64)
        sc.threshold_ = float(cfg["threshold"])
        sc.metrics_ = cfg.get("metrics", {})
        sc.calibration_ = CalibrationSet.load(directory)
        return sc


# ------------------------------------------------------------------------------------------- rules, callables
class RegexScorer:
    """Score = number of the patterns that match the response (or prompt + response)."""

    def __init__(
        self, patterns: Sequence[str], ignore_case: bool = True, on: str = "response", name: str = "regex"
    ):
        flags = re.IGNORECASE if ignore_case else 0
        self.patterns = list(patterns)
        self._re = [re.compile(p, flags) for p in self.patterns]
        self.on, self.name = on, name
        self.threshold_ = 0.5  # "no pattern matches" is the natural cut for direction max

    def score(self, prompts: str | Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """How many of the patterns match each response (or prompt and response, with ``on``); 0 = none."""
        prompts, responses = _broadcast(prompts, responses)
        texts = (
            responses
            if self.on == "response"
            else [p + "\n" + r for p, r in zip(prompts, responses, strict=False)]
        )
        return np.array([sum(bool(r.search(t)) for r in self._re) for t in texts], dtype=np.float64)


class CallableScorer:
    """Any Python callable ``f(prompts, responses) -> scores`` (or a ``module:function`` reference)."""

    def __init__(self, fn: Callable[..., Any] | str, name: str | None = None):
        if isinstance(fn, str):
            mod, _, attr = fn.partition(":")
            try:
                fn = getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"cannot import scorer {mod}:{attr} ({exc})") from None
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "callable")

    def score(self, prompts: str | Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """The wrapped function's scores, one float per response."""
        prompts, responses = _broadcast(prompts, responses)
        out = np.asarray(self.fn(prompts, responses), dtype=np.float64).reshape(-1)
        if len(out) != len(responses):
            raise ConfigError(f"scorer {self.name} returned {len(out)} scores for {len(responses)} responses")
        return out


class AttributeScorer:
    """A metadata column looked up by response text (NaN = unknown -> fails closed). Bind a table with ``bind``."""

    def __init__(
        self, column: str, table: pd.DataFrame | Mapping[str, float] | None = None, name: str | None = None
    ):
        self.column, self.name = column, name or f"attr:{column}"
        self._map: dict[str, float] = {}
        if table is not None:
            self.bind(table)

    def bind(self, table: pd.DataFrame | Mapping[str, float]) -> AttributeScorer:
        """Add the values to look up: an items table (its ``column`` by ``text``) or a mapping text -> value;
        returns self."""
        if isinstance(table, pd.DataFrame):
            if self.column not in table.columns:
                raise DataError(f"items table has no column {self.column!r}", field=self.column)
            key = "text" if "text" in table.columns else table.columns[0]
            self._map.update(
                dict(zip(table[key].astype(str), table[self.column].astype(float), strict=False))
            )
        else:
            self._map.update({str(k): float(v) for k, v in table.items()})
        return self

    def score(self, prompts: str | Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """The bound value of each response's text; NaN for a text the table does not hold (which fails the
        constraint)."""
        _, responses = _broadcast(prompts, responses)
        return np.array([self._map.get(r, np.nan) for r in responses], dtype=np.float64)


def response_length(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """Characters in each response: a length bound (``direction: max``) as a ``callable`` scorer, on the default
    allow-list as ``personalign.bounds.scorers:response_length``."""
    return np.array([len(r) for r in responses], dtype=np.float64)


def build_scorer(
    spec: Any, base: Path | None = None, allow: frozenset[str] | None = None, source: str | None = None
) -> Any:
    """A scorer from a policy's :class:`~personalign.bounds.policy.ScorerSpec` (paths relative to ``base``).

    A ``callable`` target must be on ``allow`` (default: :data:`~personalign.bounds.policy.DEFAULT_CALLABLES`);
    one that is not raises ConfigError before anything is imported."""

    def _p(path: str | None) -> Path | None:
        if path is None:
            return None
        q = Path(path).expanduser()
        return q if q.is_absolute() or base is None else base / q

    if spec.type == "harmlessness":
        return HarmlessnessHead.load(_p(spec.path))
    if spec.type == "consensus":
        return ConsensusScorer.load(_p(spec.path))
    if spec.type == "regex":
        return RegexScorer(spec.patterns or [], ignore_case=spec.ignore_case, on=spec.on)
    if spec.type == "callable":
        check_callable(spec.target, DEFAULT_CALLABLES if allow is None else allow, source)
        return CallableScorer(spec.target)
    if spec.type == "attribute":
        return AttributeScorer(spec.column)
    raise ConfigError(f"unknown scorer type {spec.type!r}")


# ------------------------------------------------------------------------------------------------ training
def default_shared_data() -> Path:
    """``$PERSONALIGN_SHARED_DATA`` or ``../shared/data`` beside the project checkout."""
    env = os.environ.get("PERSONALIGN_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def train_harmlessness(
    out: str | Path,
    hh_path: str | Path | None = None,
    l2: float | str = "cv",
    seed: int = 0,
    progress: bool = True,
) -> HarmlessnessHead:
    """Train the harmlessness head on HH-RLHF harmless pairs and save it to ``out`` (reproducible: fixed seed)."""
    hh_path = Path(hh_path) if hh_path else default_shared_data() / "hh-rlhf-harmless-test" / "test.jsonl.gz"
    if not hh_path.exists():
        raise ConfigError(f"{hh_path}: HH-RLHF harmless pairs not found")
    pairs = read_hh_pairs(hh_path)
    head = HarmlessnessHead(l2=l2, random_state=seed).fit(pairs, progress=progress)
    head.save(
        out,
        extra={"trained_on": str(hh_path.name), "command": f"personalign bounds train-scorers --seed {seed}"},
    )
    return head


def train_consensus(
    out: str | Path, shared: str | Path | None = None, l2: float = 1e-3, seed: int = 0, progress: bool = True
) -> ConsensusScorer:
    """Train the consensus scorer on POPQUORN offensiveness + the toxicity set and save it to ``out``."""
    shared = Path(shared) if shared else default_shared_data()
    items = consensus_items(
        shared / "popquorn" / "offensiveness" / "raw_data.csv", shared / "toxicity-perspective-prolific"
    )
    sc = ConsensusScorer(l2=l2, random_state=seed).fit(items, progress=progress)
    sc.save(
        out,
        extra={
            "trained_on": ["popquorn/offensiveness", "toxicity-perspective-prolific"],
            "command": f"personalign bounds train-scorers --seed {seed}",
        },
    )
    return sc
