"""Personalized DPO data: per person, (prompt, chosen, rejected) pairs picked by that person's bounded reward.

Every person sees the same candidate answers for a prompt (given, or sampled from a local model); their learned
reward, bounded by the policy, picks the pair: ``chosen = argmax R_u`` among the candidates that satisfy the
universal constraints, ``rejected`` = the lowest-ranked ones. So two persons with different values get different
pairs from the same candidates, and a harmful answer can be a ``rejected`` but never a ``chosen``.
Output is TRL's preference format (standard strings or conversational messages) plus a ``user_id`` column;
the person's conditioning can ride along as a system message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from personalign.bounds.bounded import BoundedPolicy
from personalign.data.files import atomic_dir, atomic_write
from personalign.errors import ConfigError, DataError

Candidates = Mapping[str, Sequence[str]] | pd.DataFrame


def candidates_from_frame(df: pd.DataFrame, source: str = "candidates") -> dict[str, list[str]]:
    """``{prompt: [responses]}`` from a table with ``prompt`` and ``response`` (one row each) or ``responses`` (lists)."""
    if "prompt" not in df.columns:
        raise DataError(
            "no 'prompt' column", file=source, field="prompt", expected="columns prompt + response(s)"
        )
    out: dict[str, list[str]] = {}
    if "responses" in df.columns:
        for i, (p, rs) in enumerate(zip(df["prompt"], df["responses"], strict=False)):
            if not isinstance(rs, list | tuple | np.ndarray) or len(rs) == 0:
                raise DataError(
                    "expected a non-empty list of responses", file=source, row=i, field="responses"
                )
            out.setdefault(str(p), []).extend(str(r) for r in rs)
    elif "response" in df.columns:
        for i, (p, r) in enumerate(zip(df["prompt"], df["response"], strict=False)):
            if not isinstance(r, str) or not r.strip():
                raise DataError("expected a non-empty string", file=source, row=i, field="response")
            out.setdefault(str(p), []).append(r)
    else:
        raise DataError(
            "no 'response' or 'responses' column",
            file=source,
            field="response",
            expected="one candidate per row (response) or a list per prompt (responses)",
        )
    return {p: list(dict.fromkeys(rs)) for p, rs in out.items()}  # drop duplicate candidates, keep order


def read_candidates(path: str | Path) -> dict[str, list[str]]:
    """Candidates from a JSONL, CSV or Parquet file (columns ``prompt`` and ``response`` or ``responses``)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    suf = p.suffix.lower()
    if suf in (".jsonl", ".json"):
        rows = []
        with p.open(encoding="utf-8") as fh:
            for ln, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"not valid JSON ({exc.msg})", file=str(p), line=ln) from None
        df = pd.DataFrame(rows)
    elif suf == ".csv":
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    elif suf == ".parquet":
        df = pd.read_parquet(p)
    else:
        raise DataError("unknown candidates format", file=str(p), expected="a .jsonl, .csv or .parquet file")
    return candidates_from_frame(df, source=str(p))


def personalized_pairs(
    reward: BoundedPolicy | Any,
    users: Sequence[str],
    prompts: Sequence[str] | None = None,
    candidates: Candidates | None = None,
    *,
    policy: Any = None,
    generator: Any = None,
    n: int = 4,
    pairs_per_prompt: int = 1,
    min_margin: float = 0.0,
    system_message: str | Mapping[str, str] | Callable[[str], str | None] | None = None,
    conversational: bool = False,
    show_progress: bool = False,
) -> pd.DataFrame:
    """Per-person DPO pairs in TRL's format, chosen by each person's bounded reward among shared candidates.

    ``reward``: a :class:`~personalign.bounds.BoundedPolicy`, or a model (then ``policy``, a preset name, a file
    or a BoundedPolicy, bounds it; None: unbounded). ``candidates``: ``{prompt: [...]}``
    or a table (see :func:`candidates_from_frame`); None: ``generator.generate(prompt, n)`` samples them once per
    prompt (``prompts`` required). For each (person, prompt): chosen = the best candidate the policy allows,
    rejected = the ``pairs_per_prompt`` lowest-ranked others (violating candidates rank lowest); a pair whose reward
    margin is below ``min_margin`` is skipped, and so is a prompt where the policy allows no candidate.
    ``system_message``: a template with ``{user_id}`` (or a mapping / callable person -> text) put in front as a
    system message (conversational) or a ``system`` column (standard). Columns: ``user_id, prompt, chosen,
    rejected`` (+ ``system``), ``chosen_reward, rejected_reward, margin`` (bounded rewards).
    """
    if not isinstance(reward, BoundedPolicy):
        reward = BoundedPolicy(reward, policy)
    elif policy is not None:
        raise ConfigError("personalized_pairs got a BoundedPolicy and a policy: give the policy once")
    if candidates is None:
        if generator is None or prompts is None:
            raise ConfigError(
                "personalized_pairs needs candidates, or prompts and a generator to sample them"
            )
        it = tqdm(list(prompts), desc="sampling candidates", disable=not show_progress)
        cands = {str(p): list(dict.fromkeys(generator.generate(str(p), n=n))) for p in it}
    elif isinstance(candidates, pd.DataFrame):
        cands = candidates_from_frame(candidates)
    else:
        cands = {str(p): list(dict.fromkeys(str(r) for r in rs)) for p, rs in candidates.items()}
    if prompts is not None:
        missing = [p for p in prompts if str(p) not in cands]
        if missing:
            raise DataError(
                f"no candidates for prompt {missing[0]!r}", field="prompt", expected="candidates per prompt"
            )
        cands = {str(p): cands[str(p)] for p in prompts}
    if pairs_per_prompt < 1:
        raise ConfigError(f"pairs_per_prompt must be >= 1, got {pairs_per_prompt}")

    rows: list[dict[str, Any]] = []
    work = [(u, p) for u in users for p in cands]
    for u, p in tqdm(work, desc="choosing pairs", disable=not show_progress):
        texts = cands[p]
        if len(texts) < 2:
            continue
        d = reward.evaluate([str(u)] * len(texts), [p] * len(texts), texts)
        best = reward.choose_index(d)
        if best < 0 or not d["allowed"][best]:
            continue  # nothing the policy allows: no pair teaches a preferred answer here
        r = np.asarray(d["reward"], dtype=np.float64)
        others = [i for i in np.argsort(r, kind="stable") if i != best][:pairs_per_prompt]
        for j in others:
            margin = float(r[best] - r[j])
            if margin < min_margin or margin <= 0:
                continue
            rows.append(
                {
                    "user_id": str(u),
                    "prompt": p,
                    "chosen": texts[best],
                    "rejected": texts[j],
                    "chosen_reward": float(r[best]),
                    "rejected_reward": float(r[j]),
                    "margin": margin,
                }
            )
    df = pd.DataFrame(
        rows,
        columns=["user_id", "prompt", "chosen", "rejected", "chosen_reward", "rejected_reward", "margin"],
    )
    sys_of = _system_fn(system_message)
    if conversational:
        df["prompt"] = [
            ([{"role": "system", "content": s}] if (s := sys_of(u)) else [])
            + [{"role": "user", "content": p}]
            for u, p in zip(df["user_id"], df["prompt"], strict=False)
        ]
        df["chosen"] = [[{"role": "assistant", "content": c}] for c in df["chosen"]]
        df["rejected"] = [[{"role": "assistant", "content": c}] for c in df["rejected"]]
    elif system_message is not None:
        df.insert(2, "system", [sys_of(u) or "" for u in df["user_id"]])
    return df


def _system_fn(
    spec: str | Mapping[str, str] | Callable[[str], str | None] | None,
) -> Callable[[str], str | None]:
    if spec is None:
        return lambda u: None
    if isinstance(spec, str):
        return lambda u: spec.format(user_id=u)
    if isinstance(spec, Mapping):
        return lambda u: spec.get(u)
    if callable(spec):
        return spec
    raise ConfigError(
        f"system_message must be a template string, a mapping or a callable, got {type(spec).__name__}"
    )


def is_pairs_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a Hugging Face dataset folder (``save_to_disk``), as ``write_pairs`` writes one."""
    return all((Path(folder) / f).is_file() for f in ("dataset_info.json", "state.json"))


def write_pairs(df: pd.DataFrame, path: str | Path, format: str | None = None) -> Path:
    """Write DPO pairs as JSONL, Parquet, or a Hugging Face dataset folder (``save_to_disk``), atomically.

    ``format``: ``jsonl``, ``parquet`` or ``hf``; None infers it from the suffix (no suffix: ``hf``).
    """
    out = Path(path)
    fmt = (
        format or {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}.get(out.suffix.lower(), "hf")
    ).lower()
    if fmt == "hf":
        from datasets import Dataset

        with atomic_dir(out) as tmp:
            Dataset.from_pandas(df.reset_index(drop=True), preserve_index=False).save_to_disk(str(tmp))
        return out
    if fmt not in ("jsonl", "parquet"):
        raise ConfigError(f"unknown DPO output format {fmt!r} (expected jsonl, parquet or hf)")
    with atomic_write(out) as tmp:
        if fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for rec in df.to_dict(orient="records"):
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        else:
            df.to_parquet(tmp, index=False)
    return out


def load_pairs(path: str | Path) -> Any:
    """Read what :func:`write_pairs` wrote back as a ``datasets.Dataset`` (ready for ``trl.DPOTrainer``)."""
    from datasets import Dataset, load_dataset, load_from_disk

    p = Path(path)
    if p.is_dir():
        return load_from_disk(str(p))
    kind = "json" if p.suffix.lower() in (".jsonl", ".json") else "parquet"
    ds = load_dataset(kind, data_files=str(p), split="train")
    return ds if isinstance(ds, Dataset) else ds["train"]
