"""The demo step of the service, and a small trained model for the demo, the load benchmark and the tests."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def train_small_model(
    out: str | Path,
    data: Any = None,
    encoder: str = "hashing",
    rank: int = 4,
    seed: int = 0,
    persons: int = 60,
    comparisons_per_person: int = 30,
) -> Path:
    """Fit a LowRankBT on ``data`` (default: a small synthetic population) and save it to ``out``.

    ``encoder``: ``"hashing"`` (fast, for tests) or ``"minilm"`` (the real sentence encoder, cached on disk).
    """
    from personalign.features import HashingEncoder, PairFeaturizer, get_encoder
    from personalign.models import LowRankBT, TrainingConfig

    if data is None:
        from personalign.data.synthetic import generate_population

        data = generate_population(
            persons=persons, comparisons_per_person=comparisons_per_person, n_prompts=8, seed=seed
        )
    enc = HashingEncoder(dim=128, seed=seed) if encoder == "hashing" else get_encoder(encoder, cache=True)
    model = LowRankBT(
        rank=rank, featurizer=PairFeaturizer(enc), training=TrainingConfig(max_iter=150), random_state=seed
    ).fit(data)
    return Path(model.save_pretrained(out))


def _opposite_feedback(items: list[str], prompt: str, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Pairs where the longer (more detailed) answer wins; the other person gets them reversed."""
    out = []
    for _ in range(12):
        a, b = rng.choice(len(items), size=2, replace=False)
        x, y = items[a], items[b]
        out.append((x, y) if len(x) >= len(y) else (y, x))
    return out


def serve_step(ctx: Any) -> None:
    """Start the service on loopback, give two persons opposite feedback, show that their scores diverge."""
    from rich.table import Table

    from personalign.serve.launch import ServerProcess

    con = ctx.console
    work = Path(ctx.out) / "serve"
    work.mkdir(parents=True, exist_ok=True)
    model_dir = ctx.state.get("model_dir")
    data = ctx.state.get("population")
    if model_dir is None or not Path(model_dir).is_dir():
        model = ctx.state.get("model")
        if model is not None and hasattr(model, "save_pretrained"):
            model_dir = Path(model.save_pretrained(work / "model"))
        else:
            con.print("training a small LowRankBT for the service (hashing features)...")
            if data is not None:
                keep = data.user_ids[: 120 if ctx.quick else 400]
                data = data.filter_users(keep)
            model_dir = train_small_model(work / "model", data=data, seed=ctx.seed)
    db_path = work / "serve.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    admin = "admin-" + secrets.token_hex(16)
    rng = np.random.default_rng(ctx.seed)
    if data is not None and len(data.items):
        it = data.items
        prompt = str(it["prompt"].iloc[0])
        items = it.loc[it["prompt"] == prompt, "text"].astype(str).tolist()[:12]
    else:
        prompt = "How should I start learning to cook?"
        items = [
            "Start with eggs.",
            "Begin with a few simple dishes you like, such as pasta, eggs and soup; learn knife skills, how heat "
            "works, and taste as you go. Cook the same dish several times until it is reliable.",
            "Just cook!",
            "Pick three recipes, buy a good knife, and practise each recipe weekly, noting what you change.",
        ]
    with ServerProcess(model_dir, str(db_path), admin) as srv:
        con.print(f"service running at {srv.url} (model {model_dir})", highlight=False)
        h = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            keys = {}
            for person in ("alice", "bob"):
                r = c.post(f"/v1/persons/{person}/keys", headers=h, json={"label": "demo"})
                r.raise_for_status()
                keys[person] = {"Authorization": f"Bearer {r.json()['key']}"}
            pairs = _opposite_feedback(items, prompt, rng)
            for chosen, rejected in pairs:  # alice likes detail, bob brevity
                for person, (a, b) in (("alice", (chosen, rejected)), ("bob", (rejected, chosen))):
                    r = c.post(
                        f"/v1/persons/{person}/feedback", headers=keys[person],
                        json={"kind": "comparison", "prompt": prompt, "chosen": a, "rejected": b},
                    )  # fmt: skip
                    r.raise_for_status()
            forbidden = c.get("/v1/persons/bob", headers=keys["alice"]).status_code
            scores = {}
            for person in ("alice", "bob"):
                r = c.post(
                    f"/v1/persons/{person}/score",
                    headers=keys[person],
                    json={"prompt": prompt, "candidates": items},
                )
                r.raise_for_status()
                scores[person] = r.json()
            prof = {p: c.get(f"/v1/persons/{p}", headers=keys[p]).json() for p in ("alice", "bob")}
    a = np.asarray(scores["alice"]["rewards"])
    b = np.asarray(scores["bob"]["rewards"])
    pop = np.asarray(scores["alice"]["population_rewards"])
    t = Table(title=f"Same candidates, two persons (prompt: {prompt[:60]!r})")
    t.add_column("candidate", justify="left", no_wrap=True, overflow="ellipsis", max_width=48)
    for col in ("words", "population", "alice (likes detail)", "bob (likes brevity)"):
        t.add_column(col, justify="right")
    for i in np.argsort(-a)[:8]:
        t.add_row(items[i], str(len(items[i].split())), f"{pop[i]:+.2f}", f"{a[i]:+.2f}", f"{b[i]:+.2f}")
    con.print(t)
    corr = float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 else float("nan")
    lengths = np.asarray([len(x) for x in items], dtype=float)
    ca, cb = (float(np.corrcoef(lengths, s)[0, 1]) for s in (a, b))
    con.print(
        f"{len(pairs)} opposite comparisons each -> correlation of alice's and bob's rewards: {corr:+.2f}; "
        f"reward vs length: alice {ca:+.2f}, bob {cb:+.2f}. Posterior distance from the population: alice "
        f"{prof['alice']['posterior']['distance_from_prior']:.2f}, bob {prof['bob']['posterior']['distance_from_prior']:.2f}. "
        f"alice's key on bob's profile -> HTTP {forbidden}.",
        highlight=False,
    )
    ctx.state["serve"] = {
        "reward_correlation": corr,
        "length_corr": {"alice": ca, "bob": cb},
        "forbidden": forbidden,
    }
