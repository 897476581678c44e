"""What the model believes a person prefers, in words they can read: the one explanation the CLI
(``personalign explain``), the service's profile endpoint and the person's page all show.

For a linear-Gaussian model (``r_u = s(x) + g(x)^T w_u``) the explanation has

- the person's place on each personal direction (the prior's principal axes, :mod:`personalign.models.directions`)
  in population standard deviations, with its posterior sd and whether the 95% interval excludes the average;
- each direction named by the reference texts at its two extremes and by the interpretable descriptors its
  loadings correlate with (Spearman; :mod:`personalign.features.descriptors`: length, readability, sentiment,
  formality proxies), and a one-line summary ("prefers longer, more formal answers than most (+1.2 sd,
  confident)");
- where the person's belief came from (trained / feedback / prior, how many judgments);
- with a policy and some recent answers, what the bounds changed (which constraint blocked which answer, or the
  trust region pulling the person back toward the population), and the monitors' state in plain words.

Reference texts are the ones given, else the training items the model kept (``reference_items_``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from scipy.stats import rankdata

from personalign.bounds.bounded import BoundedPolicy
from personalign.errors import DataError
from personalign.features.descriptors import DESCRIPTORS, WORDING, text_descriptors
from personalign.models.directions import PrincipalAxes, principal_axes, text_loadings

MIN_CORRELATION = 0.3  # |Spearman rho| from which a descriptor names a direction
Z95 = 1.959964  # the 95% normal interval
TEXT_CHARS = 240  # example texts are cut to this length


class Descriptor(BaseModel):
    """An interpretable descriptor a direction correlates with."""

    name: str
    meaning: str
    correlation: float = Field(
        description="Spearman rho of the direction's text loadings with the descriptor."
    )


class Direction(BaseModel):
    """One personal direction: the person's place on it, its uncertainty and its names."""

    index: int = Field(description="0 = the direction along which people differ most.")
    variance_share: float = Field(description="Share of the population's personal variance on it.")
    position: float = Field(description="The person's place, in population sds from the average person.")
    sd: float = Field(description="Posterior sd of the position.")
    interval: tuple[float, float] = Field(description="95% interval of the position.")
    confident: bool = Field(description="Whether the interval excludes the average person (0).")
    high_end: str = Field(description="Plain words for texts at the high (+) end.")
    low_end: str = Field(description="Plain words for texts at the low (-) end.")
    high_texts: list[str]
    low_texts: list[str]
    descriptors: list[Descriptor] = Field(description="Descriptors by |correlation|, strongest first.")
    summary: str


class AnswerEffect(BaseModel):
    """What the bounds did to one answer: the person's first choice against what was served."""

    prompt: str
    preferred: str = Field(description="The answer the person's own preferences rank first.")
    served: str = Field(description="The answer the bounded policy gives (its refusal text if it refuses).")
    changed: bool
    constraint: str | None = Field(description="The constraint that blocked the preferred answer, if any.")
    reason: str


class BoundsEffect(BaseModel):
    """The bounds' effect on a person: the trust region and the answers they changed."""

    policy: str | None
    trust_region: dict[str, Any] | None = None
    answers: list[AnswerEffect] = []
    summary: str


class MonitorNote(BaseModel):
    """One monitor's state in plain words."""

    name: str
    flag: bool | None = Field(description="True: a risk was flagged; None: not assessed.")
    says: str


class PersonExplanation(BaseModel):
    """What the model believes a person prefers (see the module docstring); ``to_dict`` gives JSON-safe data."""

    user_id: str | None
    model: str
    k: int = Field(description="Personal dimensions of the model.")
    source: Literal["prior", "trained", "feedback"]
    n_training_judgments: int | None
    n_feedback_judgments: int
    provenance: str
    reference: dict[str, Any] = Field(description="Which texts named the directions: source and count.")
    directions: list[Direction]
    bounds: BoundsEffect
    monitors: list[MonitorNote]
    notes: list[str] = []

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data (what the profile endpoint's ``explanation`` field and ``--json`` carry)."""
        return self.model_dump(mode="json")


# ------------------------------------------------------------------------------------------ directions
def _cut(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1].rstrip() + "\u2026"


def _spearman(t: np.ndarray, table: pd.DataFrame) -> dict[str, float]:
    """Spearman rho of ``t`` with each column (columns with too few values or no spread are left out)."""
    out: dict[str, float] = {}
    rt = rankdata(t)
    for name in table.columns:
        v = table[name].to_numpy(dtype=np.float64)
        ok = np.isfinite(v)
        if ok.sum() < 3 or np.ptp(v[ok]) == 0 or np.ptp(t[ok]) == 0:
            continue
        rho = float(np.corrcoef(rankdata(t[ok]) if not ok.all() else rt, rankdata(v[ok]))[0, 1])
        if math.isfinite(rho):
            out[str(name)] = rho
    return out


def _ends(corr: dict[str, float]) -> tuple[str, str, list[str]]:
    """(high-end words, low-end words, descriptor names used) from the strong correlations."""
    strong = sorted((n for n in corr if abs(corr[n]) >= MIN_CORRELATION), key=lambda n: -abs(corr[n]))[:2]
    hi, lo = [], []
    for n in strong:
        more, less = WORDING.get(n, (f"more {n}", f"less {n}"))
        hi.append(more if corr[n] > 0 else less)
        lo.append(less if corr[n] > 0 else more)
    return ", ".join(hi), ", ".join(lo), strong


def _summary(z: float, sd: float, confident: bool, high: str, low: str, hi_text: str, lo_text: str) -> str:
    """One plain line: which end the person leans to, how far and how sure."""
    toward, away = (high, low) if z >= 0 else (low, high)
    if toward:
        what = f"{toward} answers than most"
    elif not hi_text:
        what = f"the {'+' if z >= 0 else '-'} end of this (unnamed: no reference texts) direction"
    else:  # no descriptor tracks the direction: say it with its example texts
        ex_to, ex_away = (hi_text, lo_text) if z >= 0 else (lo_text, hi_text)
        what = (
            f"answers like \u201c{ex_to[:60]}\u201d over ones like \u201c{ex_away[:60]}\u201d, more than most"
        )
    tag = f"({z:+.1f} sd, {'confident' if confident else 'uncertain'})"
    if confident:
        return f"prefers {what} {tag}"
    if abs(z) >= 0.5:
        return f"may prefer {what} {tag}"
    span = f"{high} vs {low}" if high else "this direction"
    if sd >= 0.95:  # the posterior is (nearly) the prior here: nothing learned about the person on this axis
        return f"not known yet on {span}: your judgments say little about it {tag}"
    return f"close to most people on {span} {tag}"


def name_directions(
    model: Any,
    posterior: Any,
    prompts: str | Sequence[str],
    texts: Sequence[str],
    descriptors: pd.DataFrame | None = None,
    max_directions: int | None = 8,
    n_examples: int = 3,
) -> list[Direction]:
    """The person's place on each personal direction and the direction's names (module docstring).

    ``descriptors``: a table aligned with ``texts`` to name directions by (default: :func:`text_descriptors`).
    """
    prior = model.prior()
    axes: PrincipalAxes = principal_axes(prior, max_directions)
    if not len(axes):
        return []
    z, sd = axes.position(posterior)
    total = float(np.trace(np.asarray(prior.cov)))
    T = text_loadings(model, axes, prompts, texts) if len(texts) else np.zeros((0, len(axes)))
    table = descriptors if descriptors is not None else text_descriptors(texts)
    shares = axes.variances / total if total > 0 else np.zeros(len(axes))
    return [
        _direction(k, float(z[k]), float(sd[k]), float(shares[k]), T[:, k], texts, table, n_examples)
        for k in range(len(axes))
    ]


def _direction(
    k: int,
    z: float,
    sd: float,
    share: float,
    t: np.ndarray,
    texts: Sequence[str],
    table: pd.DataFrame,
    n_examples: int,
) -> Direction:
    """One direction from the person's place ``z +- sd`` on it and the reference texts' loadings ``t``."""
    order = np.argsort(-t, kind="stable")
    corr = _spearman(t, table) if len(t) >= 3 else {}
    high, low, _ = _ends(corr)
    hi_texts = [_cut(texts[i]) for i in order[:n_examples]]
    lo_texts = [_cut(texts[i]) for i in order[::-1][:n_examples]]
    lo_i, hi_i = z - Z95 * sd, z + Z95 * sd
    confident = bool(lo_i > 0 or hi_i < 0)
    ranked = sorted(corr, key=lambda n: -abs(corr[n]))
    return Direction(
        index=k,
        variance_share=share,
        position=z,
        sd=sd,
        interval=(lo_i, hi_i),
        confident=confident,
        high_end=high,
        low_end=low,
        high_texts=hi_texts,
        low_texts=lo_texts,
        descriptors=[Descriptor(name=n, meaning=DESCRIPTORS.get(n, n), correlation=corr[n]) for n in ranked],
        summary=_summary(
            z, sd, confident, high, low, hi_texts[0] if hi_texts else "", lo_texts[0] if lo_texts else ""
        ),
    )


# ------------------------------------------------------------------------------------------ bounds
def _violation_words(bp: BoundedPolicy, scores: Mapping[str, np.ndarray], i: int, names: list[str]) -> str:
    parts = []
    by_name = {c.name: c for c in bp.constraints}
    for name in names:
        c = by_name.get(name.removesuffix(" (warn)"))
        if c is None:
            continue
        op = "at least" if c.direction == "min" else "at most"
        s = float(scores[c.name][i])
        if not math.isfinite(s):  # unscorable counts as violated (the bounds fail closed)
            parts.append(f"{c.name} could not be scored, which counts as a violation")
        else:
            parts.append(f"{c.name} scored {s:.2f}, must be {op} {bp.thresholds[c.name]:.2f}")
    return "; ".join(parts)


def _answer_effect(bp: BoundedPolicy, posterior: Any, prompt: str, candidates: list[str]) -> AnswerEffect:
    """What the bounds did to one answer: the person's own first choice against what the policy serves."""
    ev = bp.evaluate(posterior, prompt, candidates)
    personal = np.where(np.isfinite(ev["personal"]), ev["personal"], -np.inf)
    pref = int(np.argmax(personal))
    served = bp.choose_index(ev)
    served_text = candidates[served] if served >= 0 else (bp.fallback_text or "")
    blocking = [v for v in ev["violations"][pref] if not v.endswith("(warn)")]
    constraint = blocking[0] if blocking else None
    if served < 0:
        reason = "no answer met the constraints, so the policy refused"
        if blocking:
            reason += f" (your first choice: {_violation_words(bp, ev['scores'], pref, blocking)})"
    elif served == pref:
        reason = "the bounds did not change this answer"
    elif blocking:
        reason = f"your first choice was blocked: {_violation_words(bp, ev['scores'], pref, blocking)}"
    else:
        reason = (
            "the trust region (and, where people agree, the consensus bound) held your preferences closer to "
            "the population's, which put another allowed answer first"
        )
    return AnswerEffect(
        prompt=_cut(prompt),
        preferred=_cut(candidates[pref]),
        served=_cut(served_text),
        changed=served != pref,
        constraint=constraint,
        reason=reason,
    )


def _trust_region(bp: BoundedPolicy, posterior: Any) -> dict[str, Any] | None:
    prior = bp.model.prior()
    if bp.policy is None or not posterior.dim:
        return None
    rho = bp.policy.trust_region.rho
    d = np.asarray(posterior.mean) - np.asarray(prior.mean)
    dist = float(np.sqrt(max(d @ np.linalg.solve(np.asarray(prior.cov), d), 0.0)))
    shift = float(np.linalg.norm(np.asarray(posterior.mean) - bp.weights(posterior)))
    outside = bool(rho is not None and dist > rho)
    if rho is None:
        says = "no trust region: your preferences apply as learned"
    elif outside:
        says = (
            f"your preferences reach beyond the trust region (distance {dist:.2f} from the population, "
            f"{rho:.2f} allowed): they are pulled back to its edge before answers are ranked"
        )
    else:
        says = f"your preferences are within the trust region (distance {dist:.2f} of {rho:.2f} allowed)"
    return {"rho": rho, "distance": dist, "outside": outside, "projected_shift": shift, "says": says}


def bounds_effect(
    bounded: BoundedPolicy, posterior: Any, answers: Sequence[Mapping[str, Any]] | None = None
) -> BoundsEffect:
    """The bounds' effect on a person: the trust region, and per answer (``{"prompt", "candidates"}``) what the
    bounded policy served instead of the person's own first choice and why."""
    if bounded.policy is None:
        return BoundsEffect(
            policy=None,
            summary="no policy: answers follow your learned preferences alone; nothing is blocked",
        )
    effects = [
        _answer_effect(bounded, posterior, str(a.get("prompt") or ""), [str(c) for c in a["candidates"]])
        for a in answers or ()
        if len(a.get("candidates") or ()) > 0
    ]
    changed = sum(e.changed for e in effects)
    summary = f"policy {getattr(bounded.policy, 'name', None) or bounded.source}: " + (
        f"the bounds changed {changed} of your last {len(effects)} answers"
        if effects
        else "no answers to check"
    )
    return BoundsEffect(
        policy=bounded.source,
        trust_region=_trust_region(bounded, posterior),
        answers=effects,
        summary=summary,
    )


# ------------------------------------------------------------------------------------------ monitors
def _lock_in_note(found: Mapping[str, Any] | None) -> MonitorNote:
    if not found:
        return MonitorNote(
            name="lock_in", flag=None, says="not assessed: no stored judgments of yours to check"
        )
    if "accuracy_old" not in found:
        return MonitorNote(
            name="lock_in", flag=None, says=f"not assessed yet ({found.get('note', 'too few')})"
        )
    a_old, a_new = found["accuracy_old"], found["accuracy_recent"]
    if found.get("flag_drift"):
        says = (
            f"your recent judgments are explained worse than older ones ({a_new:.0%} vs {a_old:.0%}): your "
            "preferences may have moved while the model held on; reset, or let old judgments fade"
        )
    elif found.get("flag_overconfidence"):
        says = (
            f"the model is surer about you ({found['confidence_recent']:.0%}) than it is right "
            f"({a_new:.0%}) on your recent judgments"
        )
    else:
        says = f"no sign of lock-in: recent judgments are predicted about as well as older ones ({a_new:.0%} vs {a_old:.0%})"
    return MonitorNote(name="lock_in", flag=bool(found.get("flag")), says=says)


def _bubble_note(found: Mapping[str, Any]) -> MonitorNote:
    r, t = found.get("entropy_ratio", 1.0), found.get("threshold", 0.5)
    if found.get("flag"):
        says = f"what you were shown is much narrower than what others see (diversity {r:.0%} of theirs, below {t:.0%})"
    else:
        says = (
            f"no filter bubble: what you were shown is about as varied as what others see ({r:.0%} of theirs)"
        )
    return MonitorNote(name="filter_bubble", flag=bool(found.get("flag")), says=says)


def monitor_notes(monitors: Mapping[str, Any] | None) -> list[MonitorNote]:
    """Monitor findings (:mod:`personalign.bounds.monitors`: ``lock_in``, ``filter_bubble``, ``sycophancy``
    keys) in plain words; lock-in is always reported (as not assessed when absent)."""
    monitors = monitors or {}
    notes = [_lock_in_note(monitors.get("lock_in"))]
    if monitors.get("filter_bubble"):
        notes.append(_bubble_note(monitors["filter_bubble"]))
    syc = monitors.get("sycophancy")
    if syc:
        says = (
            f"your reward agrees with mistaken views more often than the population's ({syc['rate_personal']:.0%} "
            f"vs {syc['rate_population']:.0%})"
            if syc.get("flag")
            else "no more sycophantic than the population's reward"
        )
        notes.append(MonitorNote(name="sycophancy", flag=bool(syc.get("flag")), says=says))
    return notes


# ------------------------------------------------------------------------------------------ the person
def known_person(model: Any, user_id: str | None) -> bool:
    """Whether the model learned this person (trained on them, or added with ``add_user``)."""
    if user_id is None:
        return False
    return str(user_id) in getattr(model, "user_units_", {}) or str(user_id) in getattr(model, "added_", {})


def _training_count(model: Any, user_id: Any) -> int | None:
    """Comparisons the model was trained on for a person it knows (None: the artifact did not record them)."""
    counts = getattr(model, "train_counts_", None)
    return None if counts is None else int(counts.get(str(user_id), 0))


def _provenance(source: str, n_train: int | None, n_feedback: int) -> str:
    fb = f"{n_feedback} judgment{'s' if n_feedback != 1 else ''} you gave the service"
    learned = (
        "what the model learned from your training judgments"
        if n_train is None
        else f"what the model learned from your {n_train} training judgments"
    )
    if source == "prior":
        return "the population's prior: the model has no judgments of yours, so you are treated as the average person"
    if source == "trained":
        return f"{learned}; no feedback on top yet"
    start = learned if n_train else "the population's prior"
    return f"{fb}, folded onto {start}"


def _reference(model: Any, texts: Sequence[str] | None, prompts: Any) -> tuple[list[str], Any, str]:
    if texts is not None:
        return [str(t) for t in texts], "" if prompts is None else prompts, "given"
    ref = getattr(model, "reference_items_", None)
    if ref:
        return list(ref["text"]), list(ref["prompt"]), "training items"
    return [], "", "none"


def explain_person(
    model: Any,
    user_id: str | None = None,
    posterior: Any = None,
    *,
    texts: Sequence[str] | None = None,
    prompts: str | Sequence[str] | None = None,
    descriptors: pd.DataFrame | None = None,
    source: str | None = None,
    n_training_judgments: int | None = None,
    n_feedback_judgments: int = 0,
    policy: Any = None,
    answers: Sequence[Mapping[str, Any]] | None = None,
    monitors: Mapping[str, Any] | None = None,
    max_directions: int | None = 8,
    n_examples: int = 3,
) -> PersonExplanation:
    """Explain what ``model`` believes a person prefers (module docstring).

    ``posterior``: the person's belief (default: the model's posterior for ``user_id``, the population prior for
    a person it does not know). ``texts``/``prompts``: reference texts to name directions by (default: the
    training items the model kept); ``descriptors``: a table aligned with them instead of the text descriptors.
    ``source``/``n_training_judgments``/``n_feedback_judgments``: where the belief came from (default: from
    the model). ``policy``: a BoundedPolicy, Policy, preset or file; ``answers``: ``{"prompt", "candidates"}``
    sets to show the bounds' effect on; ``monitors``: monitor findings to put in words.
    """
    known = known_person(model, user_id)
    notes = []
    if posterior is None:
        posterior = model.posterior(str(user_id)) if known else model.prior()
    if source is None:
        source = "feedback" if n_feedback_judgments else "trained" if known else "prior"
    if user_id is not None and source == "prior":
        notes.append(f"the model does not know {user_id!r}: this explains the population prior")
    if n_training_judgments is None:
        n_training_judgments = _training_count(model, user_id) if known else 0
    if not posterior.dim:
        notes.append("the model has no personal directions: everybody is served the same reward")
    ref_texts, ref_prompts, ref_source = _reference(model, texts, prompts)
    if not ref_texts:
        notes.append("no reference texts: directions are placed but not named (pass texts)")
    directions = name_directions(
        model, posterior, ref_prompts, ref_texts, descriptors, max_directions, n_examples
    )
    bp = policy if isinstance(policy, BoundedPolicy) else BoundedPolicy(model, policy)
    return PersonExplanation(
        user_id=None if user_id is None else str(user_id),
        model=type(model).__name__,
        k=int(posterior.dim),
        source=source,
        n_training_judgments=n_training_judgments,
        n_feedback_judgments=int(n_feedback_judgments),
        provenance=_provenance(source, n_training_judgments, int(n_feedback_judgments)),
        reference={"source": ref_source, "n": len(ref_texts)},
        directions=directions,
        bounds=bounds_effect(bp, posterior, answers),
        monitors=monitor_notes(monitors),
        notes=notes,
    )


def _text_record(rec: Any, src: str, where: dict[str, int]) -> tuple[str, str]:
    if isinstance(rec, str):
        return "", rec
    if not isinstance(rec, dict):
        raise DataError(
            f"got {type(rec).__name__}", file=src, **where, expected="a string or an object with 'text'"
        )
    key = "text" if "text" in rec else "response"
    text, prompt = rec.get(key), rec.get("prompt") or ""
    if not isinstance(text, str) or not text.strip():
        raise DataError("missing text", file=src, **where, field=key, expected="a non-empty string")
    if not isinstance(prompt, str):
        raise DataError("not a string", file=src, **where, field="prompt", expected="a string")
    return prompt, text


def read_texts(path: str | Path) -> tuple[list[str], list[str]]:
    """Reference texts from a file: ``(prompts, texts)``. JSON Lines (``.jsonl``: one object per line with
    ``text`` or ``response`` and an optional ``prompt``, or one JSON string), JSON (``.json``: a list of those),
    or plain text (one text per line, blank lines skipped)."""
    p = Path(path)
    raw = p.read_text(encoding="utf-8")
    rows: list[tuple[str, str]] = []
    if p.suffix.lower() == ".jsonl":
        for i, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg})", file=str(p), line=i) from None
            rows.append(_text_record(rec, str(p), {"line": i}))
    elif p.suffix.lower() == ".json":
        try:
            recs = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg})", file=str(p), line=exc.lineno) from None
        if not isinstance(recs, list):
            raise DataError("not a list", file=str(p), expected="a JSON list of texts")
        rows = [_text_record(r, str(p), {"row": i}) for i, r in enumerate(recs)]
    else:
        rows = [("", line.strip()) for line in raw.splitlines() if line.strip()]
    if not rows:
        raise DataError("no texts", file=str(p), expected="at least one text")
    return [r[0] for r in rows], [r[1] for r in rows]
