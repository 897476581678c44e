"""The model the service runs, swappable without stopping (hot reload), plus the feature cache and the posterior
arithmetic shared by the endpoints (scoring itself goes through the state's :class:`BoundedPolicy`).

A request takes ``holder.current`` once, at its start, and uses that :class:`ModelState` to the end; a reload
builds a new state aside and swaps one reference, so in-flight requests finish on the old model and new ones see
the new model. Stored posteriors remember the model version they belong to; a posterior of another version is
recomputed from the person's stored judgments (the judgments are the source of truth, the posterior a cache).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.bounds.bounded import BoundedPolicy
from personalign.bounds.monitors import LockInMonitor
from personalign.data.files import to_jsonable
from personalign.data.pairs import pointwise_pairs
from personalign.errors import ConfigError

PAIR_COLUMNS = ["user_id", "prompt", "chosen", "rejected", "tie", "weight"]


class LRUEncoder:
    """An in-process LRU cache of text -> embedding in front of an encoder (which may itself cache on disk).

    With the MiniLM encoder a cold text costs ~10 ms on 2 cores and a disk-cache hit a file read; a hit here is a
    dict lookup, which is what keeps scoring 16 known candidates within a few ms.
    """

    def __init__(self, inner: Any, maxsize: int = 100_000) -> None:
        self.inner = inner
        self.maxsize = int(maxsize)
        self.name = getattr(inner, "name", type(inner).__name__)
        self.dim = int(getattr(inner, "dim", 0))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __getattr__(
        self, item: str
    ) -> Any:  # anything else (config(), cache_dir...) comes from the inner encoder
        if item == "inner":  # not yet set (e.g. during copy/unpickle)
            raise AttributeError(item)
        return getattr(self.inner, item)

    def encode(self, texts: Sequence[str], show_progress: bool = False, **kw: Any) -> np.ndarray:
        texts = list(texts)
        out: list[np.ndarray | None] = [None] * len(texts)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, t in enumerate(texts):
                v = self._cache.get(t)
                if v is None:
                    missing.setdefault(t, []).append(i)
                else:
                    self._cache.move_to_end(t)
                    out[i] = v
            self.hits += len(texts) - sum(len(v) for v in missing.values())
            self.misses += len(missing)
        if missing:
            uniq = list(missing)
            vecs = np.asarray(self.inner.encode(uniq, show_progress=show_progress, **kw), dtype=np.float32)
            with self._lock:
                for t, v in zip(uniq, vecs, strict=True):
                    v.setflags(write=False)
                    self._cache[t] = v
                    for i in missing[t]:
                        out[i] = v
                while len(self._cache) > self.maxsize:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(out).astype(np.float32, copy=False)

    def stats(self) -> dict[str, int]:
        return {"size": len(self._cache), "hits": self.hits, "misses": self.misses, "maxsize": self.maxsize}


def _install_lru(model: Any, maxsize: int) -> LRUEncoder | None:
    """Put an :class:`LRUEncoder` in front of the model's text encoder (featurizer.encoder), if it has one."""
    for fattr in ("featurizer_", "featurizer"):
        feat = getattr(model, fattr, None)
        enc = getattr(feat, "encoder", None) if feat is not None else None
        if enc is None or not hasattr(enc, "encode"):
            continue
        if isinstance(enc, LRUEncoder):
            return enc
        lru = LRUEncoder(enc, maxsize)
        try:
            feat.encoder = lru
        except AttributeError:  # PairFeaturizer.encoder is a read-only property over _encoder
            feat._encoder = lru
        return lru
    return None


def model_version(model_dir: Path) -> str:
    """A content hash of the model directory (file names and bytes): changes whenever the model does."""
    h = hashlib.sha1()
    for p in sorted(model_dir.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(model_dir)).encode())
            h.update(b"\0")
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:12]


@dataclass
class ModelState:
    """One loaded model (immutable once published) and its scoring front: ``bounded``, a
    :class:`~personalign.bounds.BoundedPolicy` (with the policy given at start, or none: it bounds nothing)."""

    model: Any
    model_dir: Path
    version: str
    bounded: BoundedPolicy
    policy_path: str | None = None  # the --policy given (a preset name or a file), reported by /metrics
    loaded_at: float = field(default_factory=time.time)
    lru: LRUEncoder | None = None

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        policy: str | Path | None = None,
        lru_size: int = 100_000,
        allow: Sequence[str] = (),
    ) -> ModelState:
        from personalign.models import load_model

        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ConfigError(f"model directory {model_dir} does not exist")
        version = model_version(model_dir)
        model = load_model(model_dir)
        lru = _install_lru(model, lru_size)
        bounded = BoundedPolicy(model, policy, allow=allow)  # a preset or a policy file (bounds.load_policy)
        return cls(model, model_dir, version, bounded, str(policy) if policy else None, lru=lru)

    # -------------------------------------------------------------------------------- posterior arithmetic
    def prior(self) -> Any:
        return self.model.prior()

    def is_trained(self, person_id: str) -> bool:
        """Whether the model learned this person (trained on them, or added): they start from that posterior."""
        m = self.model
        return person_id in getattr(m, "user_units_", {}) or person_id in getattr(m, "added_", {})

    def start(self, person_id: str, population: bool = False) -> Any:
        """Where a person's belief starts before any stored feedback: the learned posterior (mean and
        covariance from the fit) for a person the model knows, the population prior for anyone else, or for
        everyone with ``population`` (a person who reset to the population)."""
        if population or not self.is_trained(person_id):
            return self.prior()
        return self.model.posterior(person_id)

    def n_training_judgments(self, person_id: str) -> int | None:
        """Comparisons the model was trained on for this person (0 when unknown; None when the model did not
        record per-person counts, e.g. an artifact saved before it did)."""
        if not self.is_trained(person_id):
            return 0
        counts = getattr(self.model, "train_counts_", None)
        if counts is None:
            return None
        return int(counts.get(person_id, 0))  # 0: added after the fit (add_user), not trained on

    def posterior_from_json(self, blob: str | None, version: str | None) -> Any | None:
        """The stored posterior if it belongs to this model, else None (caller recomputes)."""

        from personalign.models import Posterior

        if blob is None or version != self.version:
            return None
        return Posterior.from_dict(json.loads(blob))

    def fold(self, posterior: Any, pairs: pd.DataFrame) -> Any:
        """Fold comparisons into a posterior (pure)."""
        if len(pairs) == 0:
            return posterior
        return self.model.update(posterior, pairs)

    def replay(self, person_id: str, rows: Iterable[Any], population: bool = False) -> tuple[Any, int]:
        """The posterior from all of a person's judgments (in id order), as the online path would
        have folded them onto the person's starting belief (:meth:`start`); returns (posterior, number of
        judgments)."""
        post = self.start(person_id, population)
        history: dict[str, list[tuple[str, float, float]]] = {}
        n = 0
        for r in rows:
            n += 1
            post = self.fold(post, judgment_pairs(person_id, r, history))
        return post, n

    def monitors(self, posterior: Any, pairs: pd.DataFrame) -> dict[str, Any]:
        """Per-person monitor state from personalign.bounds: value lock-in (drift, overconfidence on the person's
        own time-ordered judgments) and, with a policy, the trust region (is the posterior mean outside it?)."""
        pol = self.bounded.policy
        spec = pol.monitors.lock_in if pol is not None else None
        mon = (
            LockInMonitor(spec.drift_window, spec.drift_threshold, spec.max_overconfidence, spec.half_life)
            if spec is not None
            else LockInMonitor()
        )
        out: dict[str, Any] = {
            "lock_in": mon.assess(self.model, pairs, prior=self.prior()) if len(pairs) else None
        }
        if pol is not None and posterior.dim:
            rho = pol.trust_region.rho
            w = self.bounded.weights(posterior)
            prior = self.prior()
            d = np.asarray(posterior.mean) - np.asarray(prior.mean)
            dist = float(np.sqrt(max(d @ np.linalg.solve(np.asarray(prior.cov), d), 0.0)))
            out["trust_region"] = {
                "rho": rho,
                "distance": dist,
                "outside": bool(rho is not None and dist > rho),
                "projected_shift": float(np.linalg.norm(np.asarray(posterior.mean) - w)),
            }
        return to_jsonable(out)

    def suggest(self, posterior: Any, pairs: pd.DataFrame) -> int:
        return int(self.model.suggest_query(posterior, pairs))


def judgment_pairs(
    person_id: str, row: Any, history: dict[str, list[tuple[str, float, float]]]
) -> pd.DataFrame:
    """The comparisons one stored judgment contributes, given the person's earlier ratings (``history``, per
    prompt, updated in place). A comparison is itself; a rating pairs with every earlier rating of the same prompt
    by the data layer's rule (:func:`personalign.data.pairs.pointwise_pairs`: another text, another value, the
    higher rated chosen, weight = the smaller weight), as PreferenceData.to_comparisons does."""
    if row.kind == "comparison":
        return pd.DataFrame(
            [(person_id, row.prompt or "", row.chosen, row.rejected, bool(row.tie), float(row.weight))],
            columns=PAIR_COLUMNS,
        )
    prompt = row.prompt or ""
    earlier = history.setdefault(prompt, [])
    pairs = pd.DataFrame(columns=PAIR_COLUMNS)
    if not usable_rating(row.rating):  # NULL/NaN stored before ratings had to be finite: it ranks nothing
        return pairs
    if earlier:
        new = _rating_rows(person_id, prompt, [(row.response, float(row.rating), float(row.weight))])
        pairs = pointwise_pairs(new, against=_rating_rows(person_id, prompt, earlier), columns=PAIR_COLUMNS)
    earlier.append((row.response, float(row.rating), float(row.weight)))
    return pairs


def usable_rating(value: Any) -> bool:
    """Whether a stored rating can be ordered (not NULL, not NaN or infinite)."""
    return value is not None and math.isfinite(float(value))


def _rating_rows(person_id: str, prompt: str, rows: list[tuple[str, float, float]]) -> dict[str, list]:
    """(text, rating, weight) tuples of one person and prompt as pointwise columns (the text is the item)."""
    text = [r[0] for r in rows]
    n = len(rows)
    return {
        "user_id": [person_id] * n,
        "prompt": [prompt] * n,
        "response": text,
        "item_id": text,
        "rating": [r[1] for r in rows],
        "weight": [r[2] for r in rows],
    }


def all_pairs(person_id: str, rows: Iterable[Any]) -> pd.DataFrame:
    """Every comparison a person's stored judgments (in id order) contribute, as one table."""
    history: dict[str, list[tuple[str, float, float]]] = {}
    frames = [judgment_pairs(person_id, r, history) for r in rows]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PAIR_COLUMNS)


def summarize(posterior: Any, prior: Any) -> dict[str, Any]:
    """Parameter summary and uncertainty of a posterior, for the profile endpoint."""
    mean = np.asarray(posterior.mean, dtype=float).ravel()
    cov = np.asarray(posterior.cov, dtype=float).reshape(len(mean), len(mean))
    pmean = np.asarray(prior.mean, dtype=float).ravel()
    pcov = np.asarray(prior.cov, dtype=float).reshape(len(pmean), len(pmean))
    k = len(mean)
    if k:
        sign, logdet = np.linalg.slogdet(cov)
        d = mean - pmean
        dist = float(np.sqrt(max(d @ np.linalg.lstsq(pcov, d, rcond=None)[0], 0.0)))
        logdet = float(logdet) if sign > 0 else float("-inf")
    else:
        logdet, dist = 0.0, 0.0
    return {
        "k": k,
        "mean": [float(x) for x in mean],
        "mean_norm": float(np.linalg.norm(mean)),
        "distance_from_prior": dist,
        "cov_trace": float(np.trace(cov)) if k else 0.0,
        "cov_logdet": logdet if np.isfinite(logdet) else -1e308,
        "prior_cov_trace": float(np.trace(pcov)) if k else 0.0,
        "n_folded": int(getattr(posterior, "n", 0)),
    }


class ModelHolder:
    """Holds the current :class:`ModelState`; ``reload`` swaps it atomically (one reference assignment).

    ``generation`` is the served-model generation (``db.served_model``) this worker runs: a reload publishes a new
    one for the other workers, and :meth:`follow` loads what another worker published."""

    def __init__(
        self, state: ModelState, lru_size: int = 100_000, allow: Sequence[str] = (), generation: int = 0
    ) -> None:
        self._state = state
        self.allow = tuple(allow)  # the operator's --allow-callable list; a reload's policy gets no other
        self._reload_lock = threading.Lock()
        self.lru_size = lru_size
        self.reloads = 0
        self.generation = generation

    @property
    def current(self) -> ModelState:
        return self._state

    def reload(
        self,
        model_dir: str | Path | None = None,
        policy: str | Path | None = None,
        publish: Callable[[ModelState], int] | None = None,
    ) -> tuple[ModelState, str]:
        """Load a model (default: the current directory again) and switch to it; ``publish`` (called with the new
        state before the switch, under the reload lock) returns the generation it was published as. Returns
        (new state, old version)."""
        with self._reload_lock:
            old = self._state
            new = self._load(
                model_dir if model_dir is not None else old.model_dir,
                policy if policy is not None else old.policy_path,
            )
            generation = publish(new) if publish is not None else self.generation
            self._switch(new, generation)
            return new, old.version

    def follow(self, generation: int, model_dir: str | Path, policy: str | None) -> ModelState | None:
        """Switch to a model another worker published, unless this worker already runs that generation or a
        later one; returns the new state, or None when nothing changed."""
        with self._reload_lock:
            if generation <= self.generation:
                return None
            new = self._load(model_dir, policy)
            self._switch(new, generation)
            return new

    def _load(self, model_dir: str | Path, policy: str | Path | None) -> ModelState:
        return ModelState.load(model_dir, policy, self.lru_size, self.allow)

    def _switch(self, new: ModelState, generation: int) -> None:
        self._state = new
        self.generation = generation
        self.reloads += 1
