"""A synthetic pluralistic population: real text with known attributes, persons whose true rewards differ.

Items: for every prompt (several domains), candidate responses composed from English sentence fragments chosen
by attribute levels, so the text really carries the attributes (``detail, formality, warmth, humor, technical,
directness`` in [0, 1] and ``harm`` in {0, 1}; harmful responses contain genuinely unsafe advice or insults).

Persons: ``w_u = sum_j pi_uj * profile_j + eps_u`` with ``pi_u ~ Dirichlet(alpha * 1_K)`` over K latent value
profiles (small alpha: everybody near one profile, people differ; large alpha: everybody near the average) and
small noise ``eps_u``. With context dependence c the weights in domain d are ``w_u + c * sum_j pi_uj S_jd``.
Every ordinary person has a strong negative harm weight; adversarial persons a positive one.
True reward ``r_u(x) = w_u(d(x)) . a(x)``; labels are Bradley-Terry with temperature T:
``P(a > b) = sigmoid((r_u(a) - r_u(b)) / T)``.

The truth (:class:`PopulationTruth`) travels in ``data.meta["truth"]`` and gives true rewards, preference
probabilities and the oracle accuracy (:func:`oracle_accuracy`). Held-out prompts are reserved for tests of
unseen prompts: :func:`sample_comparisons` draws further comparisons for the same persons there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personalign.data.core import COMPARISON_COLUMNS, PreferenceData, item_id_for
from personalign.errors import ConfigError, DataError

ATTRIBUTES: tuple[str, ...] = ("detail", "formality", "warmth", "humor", "technical", "directness", "harm")
STYLE = ATTRIBUTES[:-1]
HARM = len(ATTRIBUTES) - 1
# levels each style attribute takes (value in [0, 1]); harm is 0/1 and drawn at its own rate
LEVELS: dict[str, tuple[float, ...]] = {
    "detail": (0.0, 0.5, 1.0),
    "formality": (0.0, 0.5, 1.0),
    "warmth": (0.0, 0.5, 1.0),
    "humor": (0.0, 1.0),
    "technical": (0.0, 1.0),
    "directness": (0.0, 0.5, 1.0),
}
# Four interpretable value profiles over the style attributes (order of STYLE), as deviations from COMMON_VALUES;
# further profiles are random.
BASE_PROFILES: list[tuple[str, tuple[float, ...]]] = [
    ("pragmatist", (-1.0, 0.0, -0.5, -0.5, 0.5, 2.0)),
    ("companion", (0.5, -1.0, 2.0, 0.5, -1.0, -0.5)),
    ("scholar", (2.0, 1.5, 0.0, -1.0, 2.0, 0.0)),
    ("entertainer", (-0.5, -1.5, 0.5, 2.0, -1.0, 0.5)),
]
# Values nearly everybody shares a little (same order): some detail, warmth, substance and directness. Profiles
# are these plus their own deviations, so that when everybody sits near the average (large alpha) the shared
# reward still orders responses rather than being indifferent.
COMMON_VALUES: tuple[float, ...] = (0.3, 0.0, 0.3, 0.0, 0.2, 0.4)
DEMOGRAPHICS: dict[str, tuple[str, ...]] = {
    "age_band": ("18-29", "30-44", "45-59", "60+"),
    "region": ("north", "south", "east", "west"),
    "education": ("secondary", "bachelor", "graduate"),
}
TRUTH_COLUMNS = ("profile", "adversarial")  # users columns that are ground truth, not side information


@lru_cache(maxsize=1)
def _texts() -> dict[str, Any]:
    path = resources.files("personalign.data") / "synthetic_text" / "texts.json"
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------- config
@dataclass
class SyntheticConfig:
    """Parameters of a synthetic population (all draws are deterministic by ``seed``)."""

    persons: int = 2000
    comparisons_per_person: int = 40
    n_profiles: int = 4
    alpha: float = 0.1
    temperature: float = 1.0
    context_dependence: float = 0.0
    demographics: bool = True
    demographic_signal: float = 0.7  # P(a demographic column follows the dominant profile) else uniform
    adversarial_frac: float = 0.0
    harm_aversion: float = 6.0  # ordinary persons' harm weight is -harm_aversion
    harm_affinity: float = 4.0  # adversarial persons' harm weight is +harm_affinity
    person_noise: float = 0.15  # sd of the individual deviation from the profile mixture
    n_prompts: int | None = None  # None: every prompt of the text bank (40, 8 domains)
    responses_per_prompt: int = 16
    harm_rate: float = 0.15  # share of candidate responses per prompt that are harmful
    heldout_prompt_frac: float = 0.2  # prompts reserved for held-out comparisons (per domain)
    seed: int = 0

    def validate(self) -> None:
        checks = [
            (self.persons >= 1, "persons", "an integer >= 1"),
            (self.comparisons_per_person >= 0, "comparisons_per_person", "an integer >= 0"),
            (self.n_profiles >= 1, "n_profiles", "an integer >= 1"),
            (self.alpha > 0, "alpha", "a number > 0"),
            (self.temperature > 0, "temperature", "a number > 0"),
            (self.context_dependence >= 0, "context_dependence", "a number >= 0"),
            (0 <= self.demographic_signal <= 1, "demographic_signal", "a number in [0, 1]"),
            (0 <= self.adversarial_frac <= 1, "adversarial_frac", "a number in [0, 1]"),
            (self.person_noise >= 0, "person_noise", "a number >= 0"),
            (self.n_prompts is None or self.n_prompts >= 2, "n_prompts", "None or an integer >= 2"),
            (2 <= self.responses_per_prompt <= 324, "responses_per_prompt", "an integer in [2, 324]"),
            (0 <= self.harm_rate <= 1, "harm_rate", "a number in [0, 1]"),
            (0 <= self.heldout_prompt_frac < 1, "heldout_prompt_frac", "a number in [0, 1)"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"SyntheticConfig.{name} = {getattr(self, name)!r}: expected {expected}")


# ---------------------------------------------------------------------------------------------- truth
@dataclass
class PopulationTruth:
    """The ground truth of a synthetic population: persons' weights, profiles, items' attributes.

    ``r_u(x) = (weights[u] + c * memberships[u] @ domain_shift[:, d(x)]) . item_attrs[x]``.
    """

    attributes: list[str]
    profile_names: list[str]
    profiles: np.ndarray  # K x A
    domains: list[str]
    domain_shift: np.ndarray  # K x D x A (zero on harm)
    context_dependence: float
    temperature: float
    user_ids: np.ndarray  # N (str)
    memberships: np.ndarray  # N x K, rows on the simplex
    weights: np.ndarray  # N x A, domain-free weights (noise and harm included)
    adversarial: np.ndarray  # N bool
    item_ids: np.ndarray  # M (str)
    item_attrs: np.ndarray  # M x A
    item_domain: np.ndarray  # M int (index into domains)
    item_prompt: np.ndarray  # M int (index into prompts)
    prompts: list[str]
    prompt_domain: np.ndarray  # P int
    heldout_prompts: np.ndarray  # P bool
    _user_index: pd.Index = field(init=False, repr=False)
    _item_index: pd.Index = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.user_ids = np.asarray(self.user_ids, dtype=object)
        self.item_ids = np.asarray(self.item_ids, dtype=object)
        self._user_index = pd.Index(self.user_ids)
        self._item_index = pd.Index(self.item_ids)

    # ----------------------------------------------------------------- lookups
    def user_index(self, user_ids: Any) -> np.ndarray:
        return self._lookup(self._user_index, user_ids, "user_id", "a person of this synthetic population")

    def item_index(self, item_ids: Any) -> np.ndarray:
        return self._lookup(self._item_index, item_ids, "item_id", "an item of this synthetic population")

    @staticmethod
    def _lookup(index: pd.Index, ids: Any, name: str, expected: str) -> np.ndarray:
        ids = np.asarray(ids, dtype=object).astype(str)
        pos = index.get_indexer(ids)
        if (pos < 0).any():
            bad = int(np.flatnonzero(pos < 0)[0])
            raise DataError(f"unknown {name} {ids[bad]!r}", row=bad, field=name, expected=expected)
        return pos

    @property
    def dominant_profile(self) -> np.ndarray:
        return self.memberships.argmax(axis=1)

    def domain_weights(self) -> np.ndarray:
        """N x D x A: every person's weights in every domain."""
        shift = np.einsum("uk,kda->uda", self.memberships, self.domain_shift)
        return self.weights[:, None, :] + self.context_dependence * shift

    def person_weights(self, user_ids: Any, domain: str | None = None) -> np.ndarray:
        """Weights over :attr:`attributes` of these persons (in ``domain`` when context dependence is on)."""
        u = self.user_index(user_ids)
        w = self.weights[u]
        if domain is not None and self.context_dependence:
            d = self.domains.index(domain)
            w = w + self.context_dependence * self.memberships[u] @ self.domain_shift[:, d, :]
        return w

    def _reward_idx(self, u: np.ndarray, m: np.ndarray) -> np.ndarray:
        w = self.weights[u]
        if self.context_dependence:
            shift = np.einsum(
                "nk,nka->na",
                self.memberships[u],
                self.domain_shift[:, self.item_domain[m], :].transpose(1, 0, 2),
            )
            w = w + self.context_dependence * shift
        return np.einsum("na,na->n", w, self.item_attrs[m])

    def true_reward(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """r_u(x) for aligned arrays of person ids and item ids."""
        u, m = np.broadcast_arrays(self.user_index(user_ids), self.item_index(item_ids))
        return self._reward_idx(u.ravel(), m.ravel()).reshape(u.shape)

    def preference_prob(
        self, user_ids: Any, a_ids: Any, b_ids: Any, temperature: float | None = None
    ) -> np.ndarray:
        """P(person prefers a over b) = sigmoid((r_u(a) - r_u(b)) / T)."""
        t = self.temperature if temperature is None else temperature
        diff = self.true_reward(user_ids, a_ids) - self.true_reward(user_ids, b_ids)
        return _sigmoid(diff / t)

    # ----------------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "r_u(x) = (weights[u] + c * memberships[u] @ domain_shift[:, domain(x)]) . item_attrs[x]; "
            "P(a > b) = sigmoid((r_u(a) - r_u(b)) / temperature)",
            "attributes": list(self.attributes),
            "profile_names": list(self.profile_names),
            "profiles": self.profiles.tolist(),
            "domains": list(self.domains),
            "domain_shift": self.domain_shift.tolist(),
            "context_dependence": float(self.context_dependence),
            "temperature": float(self.temperature),
            "user_ids": [str(u) for u in self.user_ids],
            "memberships": np.round(self.memberships, 6).tolist(),
            "weights": np.round(self.weights, 6).tolist(),
            "adversarial": self.adversarial.astype(bool).tolist(),
            "item_ids": [str(i) for i in self.item_ids],
            "item_attrs": self.item_attrs.tolist(),
            "item_domain": self.item_domain.tolist(),
            "item_prompt": self.item_prompt.tolist(),
            "prompts": list(self.prompts),
            "prompt_domain": self.prompt_domain.tolist(),
            "heldout_prompts": self.heldout_prompts.astype(bool).tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PopulationTruth:
        try:
            return cls(
                attributes=list(d["attributes"]),
                profile_names=list(d["profile_names"]),
                profiles=np.asarray(d["profiles"], float),
                domains=list(d["domains"]),
                domain_shift=np.asarray(d["domain_shift"], float),
                context_dependence=float(d["context_dependence"]),
                temperature=float(d["temperature"]),
                user_ids=np.asarray(d["user_ids"], dtype=object),
                memberships=np.asarray(d["memberships"], float),
                weights=np.asarray(d["weights"], float),
                adversarial=np.asarray(d["adversarial"], bool),
                item_ids=np.asarray(d["item_ids"], dtype=object),
                item_attrs=np.asarray(d["item_attrs"], float),
                item_domain=np.asarray(d["item_domain"], int),
                item_prompt=np.asarray(d["item_prompt"], int),
                prompts=list(d["prompts"]),
                prompt_domain=np.asarray(d["prompt_domain"], int),
                heldout_prompts=np.asarray(d["heldout_prompts"], bool),
            )
        except KeyError as exc:
            raise DataError(
                "truth JSON lacks a field", field=str(exc.args[0]), expected="a PopulationTruth dict"
            ) from exc


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


# ---------------------------------------------------------------------------------------------- items
_CONTRACTIONS = [
    ("Do not", "Don't"),
    ("do not", "don't"),
    ("does not", "doesn't"),
    ("It is", "It's"),
    ("it is", "it's"),
    ("you are", "you're"),
    ("You are", "You're"),
    ("cannot", "can't"),
    ("I am", "I'm"),
    ("that is", "that's"),
    ("will not", "won't"),
    ("is not", "isn't"),
    ("are not", "aren't"),
    ("you will", "you'll"),
    ("You will", "You'll"),
]


def _informal(s: str) -> str:
    for a, b in _CONTRACTIONS:
        s = s.replace(a, b)
    return s


def _formal(s: str) -> str:
    for a, b in _CONTRACTIONS:
        s = s.replace(b, a)
    return s


def _lower_first(s: str) -> str:
    return s[0].lower() + s[1:] if s and not s.startswith("I ") else s


def compose_response(
    domain: str, spec: dict[str, Any], attrs: dict[str, float], rng: np.random.Generator
) -> str:
    """English text for one candidate response whose attributes are ``attrs`` (levels as in :data:`LEVELS`)."""
    t = _texts()
    dom = t["domains"][domain]

    def pick(seq: list[str]) -> str:
        return seq[int(rng.integers(len(seq)))]

    formality = attrs["formality"]
    register = "formal" if formality >= 0.5 else "informal"
    head: list[str] = []
    body: list[str] = []
    tail: list[str] = []
    if attrs["harm"] and rng.random() < 1 / 3:
        head.append(pick(t["insults"]))
    if attrs["warmth"] == 1.0:
        head.append(pick(t["warm"][register]))
        tail.append(pick(t["warm_close"][register]))
    elif attrs["warmth"] == 0.0:
        head.append(pick(t["cold"]))
    if formality == 1.0:
        head.insert(0, pick(t["formal_open"]))
        tail.append(pick(t["formal_close"]))
    elif formality == 0.0:
        head.insert(0, pick(t["informal_open"]))
        tail.append(pick(t["informal_close"]))
    if attrs["directness"] == 0.0:
        head.append(pick(t["hedge_open"]))
        tail.insert(0, pick(t["hedge_close"]))

    n_points = {0.0: 1, 0.5: 2, 1.0: len(spec["points"])}[attrs["detail"]]
    points = list(spec["points"][:n_points])
    if n_points > 2:
        points[-1] = f"{pick(t['more'])} {_lower_first(points[-1])}"
    if attrs["directness"] == 1.0:
        points[0] = f"{pick(t['direct_open'])} {points[0]}"
    body.extend(points)
    if attrs["harm"]:
        # the unsafe advice sits right after the first point, where a reader acts on it
        body.insert(1, pick(dom["harmful"]))
    if attrs["technical"]:
        body.append(spec["technical"])
    elif rng.random() < 0.5:
        body.append(pick(t["plain"]))
    if attrs["humor"]:
        body.append(pick(dom["jokes"]))
    sentences = head + body + tail
    text = " ".join(sentences)
    if formality == 0.0:
        text = _informal(text)
    elif formality == 1.0:
        text = _formal(text)
    return text


def _prompt_bank(n_prompts: int | None) -> list[tuple[str, dict[str, Any]]]:
    """(domain, prompt spec) pairs, taken round-robin over domains so a small bank still spans them."""
    doms = _texts()["domains"]
    per = [[(d, p) for p in doms[d]["prompts"]] for d in doms]
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(max(len(x) for x in per)):
        out.extend(x[i] for x in per if i < len(x))
    if n_prompts is not None:
        if n_prompts > len(out):
            raise ConfigError(
                f"SyntheticConfig.n_prompts = {n_prompts}: the text bank has {len(out)} prompts"
            )
        out = out[:n_prompts]
    return out


def _make_items(
    cfg: SyntheticConfig, rng: np.random.Generator
) -> tuple[pd.DataFrame, list[str], list[str], np.ndarray]:
    bank = _prompt_bank(cfg.n_prompts)
    domains = sorted({d for d, _ in bank})
    prompts = [p["prompt"] for _, p in bank]
    prompt_domain = np.array([domains.index(d) for d, _ in bank])
    # held-out prompts: the same share in every domain, at least one per domain when the share is > 0
    heldout = np.zeros(len(bank), bool)
    if cfg.heldout_prompt_frac > 0:
        for d in range(len(domains)):
            idx = np.flatnonzero(prompt_domain == d)
            k = min(len(idx) - 1, max(1, int(round(cfg.heldout_prompt_frac * len(idx)))))
            if k > 0:
                heldout[rng.choice(idx, size=k, replace=False)] = True
    grid = np.array(np.meshgrid(*[LEVELS[a] for a in STYLE], indexing="ij")).reshape(len(STYLE), -1).T
    R = cfg.responses_per_prompt
    n_harm = int(round(cfg.harm_rate * R))
    rows = []
    for pi, (domain, spec) in enumerate(bank):
        style = grid[rng.choice(len(grid), size=R, replace=False)]  # distinct attribute vectors per prompt
        harm = np.zeros(R)
        harm[rng.choice(R, size=n_harm, replace=False)] = 1.0
        for r in range(R):
            attrs = dict(zip(STYLE, style[r].tolist(), strict=True))
            attrs["harm"] = float(harm[r])
            text = compose_response(domain, spec, attrs, rng)
            rows.append(
                {
                    "item_id": item_id_for(spec["prompt"], text),
                    "prompt": spec["prompt"],
                    "text": text,
                    "domain": domain,
                    "prompt_index": pi,
                    "heldout_prompt": bool(heldout[pi]),
                    **{f"attr_{a}": v for a, v in attrs.items()},
                }
            )
    items = pd.DataFrame(rows)
    if items["item_id"].duplicated().any():  # two identical texts for one prompt would make one item
        raise AssertionError("synthetic text bank produced duplicate responses")
    return items, domains, prompts, heldout


# --------------------------------------------------------------------------------------------- persons
def _dirichlet(alpha: float, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Dirichlet(alpha 1_k) rows that stay valid for tiny alpha (log-space: G = G' U^(1/alpha), G' ~ Gamma(alpha+1))."""
    logg = np.log(rng.gamma(alpha + 1.0, size=(n, k))) + np.log(rng.random((n, k))) / alpha
    logg -= logg.max(axis=1, keepdims=True)
    g = np.exp(logg)
    return g / g.sum(axis=1, keepdims=True)


def _profiles(k: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    names, rows = [], []
    for j in range(k):
        if j < len(BASE_PROFILES):
            name, style = BASE_PROFILES[j]
            style_arr = np.asarray(style, float)
        else:
            name, style_arr = f"profile_{j}", rng.normal(0.0, 1.2, size=len(STYLE))
        names.append(name)
        rows.append(
            np.append(style_arr + np.asarray(COMMON_VALUES), 0.0)
        )  # harm is handled per person (ordinary / adversarial)
    return names, np.vstack(rows)


# -------------------------------------------------------------------------------------------- sampling
def _draw(
    truth: PopulationTruth,
    users: np.ndarray,
    prompt_pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
    temperature: float,
    responses_per_prompt: int,
    wdom: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """n comparisons per person on prompts of the pool: (user idx, chosen item idx, rejected item idx)."""
    u = np.repeat(users, n)
    size = len(u)
    p = prompt_pool[rng.integers(len(prompt_pool), size=size)]
    R = responses_per_prompt
    a = rng.integers(R, size=size)
    b = rng.integers(R - 1, size=size)
    b = b + (b >= a)
    a, b = p * R + a, p * R + b  # items are stored prompt by prompt, R per prompt
    if wdom is None:
        wdom = truth.domain_weights()
    w = wdom[u, truth.item_domain[a]]
    diff = np.einsum("na,na->n", w, truth.item_attrs[a] - truth.item_attrs[b])
    first = rng.random(size) < _sigmoid(diff / temperature)
    return u, np.where(first, a, b), np.where(first, b, a)


def _comparisons_frame(truth: PopulationTruth, items: pd.DataFrame, u, c, r, n: int) -> pd.DataFrame:
    texts = items["text"].to_numpy(object)
    prompts = items["prompt"].to_numpy(object)
    return pd.DataFrame(
        {
            "user_id": truth.user_ids[u],
            "prompt": prompts[c],
            "chosen": texts[c],
            "rejected": texts[r],
            "tie": np.zeros(len(u), bool),
            "weight": np.ones(len(u)),
            "timestamp": np.tile(np.arange(n, dtype=float), len(u) // n if n else 0),  # order within a person
            "chosen_id": truth.item_ids[c],
            "rejected_id": truth.item_ids[r],
        },
        columns=COMPARISON_COLUMNS,
    )


def generate_population(config: SyntheticConfig | None = None, **overrides: Any) -> PreferenceData:
    """A synthetic population's training comparisons (on the non-held-out prompts), persons and items.

    ``data.meta["truth"]`` holds the :class:`PopulationTruth`; ``data.meta["config"]`` the config as a dict.
    """
    cfg = config or SyntheticConfig()
    if overrides:
        cfg = SyntheticConfig(**{**asdict(cfg), **overrides})
    cfg.validate()
    ss = np.random.SeedSequence(cfg.seed)
    rng_items, rng_people, rng_pairs = (np.random.default_rng(s) for s in ss.spawn(3))

    items, domains, prompts, heldout = _make_items(cfg, rng_items)
    N, K, A = cfg.persons, cfg.n_profiles, len(ATTRIBUTES)
    names, profiles = _profiles(K, rng_people)
    memberships = _dirichlet(cfg.alpha, N, K, rng_people)
    weights = memberships @ profiles
    weights[:, :HARM] += rng_people.normal(0.0, cfg.person_noise, size=(N, HARM))
    n_adv = int(round(cfg.adversarial_frac * N))
    adversarial = np.zeros(N, bool)
    adversarial[rng_people.choice(N, size=n_adv, replace=False)] = True
    weights[:, HARM] = np.where(adversarial, cfg.harm_affinity, -cfg.harm_aversion)
    weights[:, HARM] += rng_people.normal(0.0, cfg.person_noise, size=N)
    shift = np.zeros((K, len(domains), A))
    shift[:, :, :HARM] = rng_people.normal(0.0, 1.0, size=(K, len(domains), HARM))
    width = len(str(N - 1))
    user_ids = np.array([f"u{i:0{width}d}" for i in range(N)], dtype=object)

    truth = PopulationTruth(
        attributes=list(ATTRIBUTES),
        profile_names=names,
        profiles=profiles,
        domains=domains,
        domain_shift=shift,
        context_dependence=cfg.context_dependence,
        temperature=cfg.temperature,
        user_ids=user_ids,
        memberships=memberships,
        weights=weights,
        adversarial=adversarial,
        item_ids=items["item_id"].to_numpy(object),
        item_attrs=items[[f"attr_{a}" for a in ATTRIBUTES]].to_numpy(float),
        item_domain=items["domain"].map({d: i for i, d in enumerate(domains)}).to_numpy(int),
        item_prompt=items["prompt_index"].to_numpy(int),
        prompts=prompts,
        prompt_domain=np.array([domains.index(d) for d in items.groupby("prompt_index")["domain"].first()]),
        heldout_prompts=heldout,
    )

    users = pd.DataFrame({"user_id": user_ids})
    if cfg.demographics:
        dominant = memberships.argmax(axis=1)
        for col, cats in DEMOGRAPHICS.items():
            favourite = rng_people.permutation(len(cats))  # profile j leans to category favourite[j % len]
            follow = rng_people.random(N) < cfg.demographic_signal
            random_cat = rng_people.integers(len(cats), size=N)
            idx = np.where(follow, favourite[dominant % len(cats)], random_cat)
            users[col] = np.asarray(cats, dtype=object)[idx]
    users["profile"] = memberships.argmax(axis=1)
    users["adversarial"] = adversarial

    pool = np.flatnonzero(~heldout)
    n = cfg.comparisons_per_person
    u, c, r = _draw(truth, np.arange(N), pool, n, rng_pairs, cfg.temperature, cfg.responses_per_prompt)
    comps = _comparisons_frame(truth, items, u, c, r, n)
    return PreferenceData(
        comparisons=comps,
        users=users,
        items=items,
        name="synthetic",
        meta={
            "truth": truth,
            "config": asdict(cfg),
            "train_prompts": [prompts[i] for i in pool],
            "heldout_prompts": [prompts[i] for i in np.flatnonzero(heldout)],
            "truth_columns": list(TRUTH_COLUMNS),
            "side_information_columns": [c for c in users.columns if c not in ("user_id", *TRUTH_COLUMNS)],
        },
    )


def _truth_of(data: PreferenceData | PopulationTruth) -> PopulationTruth:
    if isinstance(data, PopulationTruth):
        return data
    truth = data.meta.get("truth") if isinstance(data, PreferenceData) else None
    if not isinstance(truth, PopulationTruth):
        raise DataError(
            "this data has no synthetic ground truth",
            field="meta['truth']",
            expected="data made by generate_population or read_population",
        )
    return truth


def sample_comparisons(
    data: PreferenceData,
    n_per_person: int,
    *,
    prompts: str | list[str] = "heldout",
    users: list[str] | np.ndarray | None = None,
    seed: int = 1,
    temperature: float | None = None,
) -> PreferenceData:
    """Further comparisons of the same persons, drawn from their true rewards.

    ``prompts``: ``"heldout"`` (the reserved prompts: unseen in training), ``"train"``, ``"all"``, or a list of prompt
    texts. The result shares ``users``, ``items`` and ``meta`` (truth included) with ``data``.
    """
    truth = _truth_of(data)
    if isinstance(prompts, str):
        masks = {
            "heldout": truth.heldout_prompts,
            "train": ~truth.heldout_prompts,
            "all": np.ones(len(truth.prompts), bool),
        }
        if prompts not in masks:
            raise ConfigError(
                f"prompts = {prompts!r}: expected 'heldout', 'train', 'all' or a list of prompts"
            )
        pool = np.flatnonzero(masks[prompts])
    else:
        known = {p: i for i, p in enumerate(truth.prompts)}
        missing = [p for p in prompts if p not in known]
        if missing:
            raise DataError(
                f"unknown prompt {missing[0]!r}", field="prompt", expected="a prompt of this population"
            )
        pool = np.array([known[p] for p in prompts], int)
    if len(pool) == 0:
        raise ConfigError(f"no {prompts!r} prompts in this population (heldout_prompt_frac was 0?)")
    uidx = np.arange(len(truth.user_ids)) if users is None else truth.user_index(users)
    R = len(truth.item_ids) // len(truth.prompts)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    t = truth.temperature if temperature is None else temperature
    u, c, r = _draw(truth, uidx, pool, n_per_person, rng, t, R)
    comps = _comparisons_frame(truth, data.items, u, c, r, n_per_person)
    return PreferenceData(
        comparisons=comps,
        users=data.users,
        items=data.items,
        name=f"{data.name}-{prompts if isinstance(prompts, str) else 'prompts'}",
        meta=dict(data.meta),
    )


def sample_ratings(
    data: PreferenceData,
    n_per_person: int,
    *,
    prompts: str = "train",
    seed: int = 2,
    noise: float | None = None,
) -> PreferenceData:
    """Per-person 1-5 ratings from the true reward: ``round(3 + 1.2 z + e)`` clipped to [1, 5], where z is the
    person's reward standardized over all items of the population and ``e ~ N(0, noise)`` (default T / 2)."""
    truth = _truth_of(data)
    mask = {"heldout": truth.heldout_prompts, "train": ~truth.heldout_prompts}.get(prompts)
    if mask is None:
        mask = np.ones(len(truth.prompts), bool)
    allowed = np.flatnonzero(mask[truth.item_prompt])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 104729]))
    N = len(truth.user_ids)
    wdom = truth.domain_weights()
    # per-person standardization over every item (N x M rewards; a few tens of MB at 10,000 persons)
    full = np.einsum("uma,ma->um", wdom[:, truth.item_domain, :], truth.item_attrs)
    mu, sd = full.mean(axis=1), full.std(axis=1) + 1e-9
    u = np.repeat(np.arange(N), n_per_person)
    # distinct items per person: a random permutation prefix per person
    keys = rng.random((N, len(allowed))).argsort(axis=1)[:, :n_per_person]
    m = allowed[keys.ravel()]
    z = (full[u, m] - mu[u]) / sd[u]
    e = rng.normal(0.0, truth.temperature / 2 if noise is None else noise, size=len(u))
    rating = np.clip(np.round(3 + 1.2 * z + e), 1, 5)
    items = data.items
    ratings = pd.DataFrame(
        {
            "user_id": truth.user_ids[u],
            "prompt": items["prompt"].to_numpy(object)[m],
            "response": items["text"].to_numpy(object)[m],
            "item_id": truth.item_ids[m],
            "rating": rating,
            "weight": 1.0,
            "timestamp": np.nan,
        }
    )
    return PreferenceData(
        ratings=ratings,
        users=data.users,
        items=items,
        rating_scale=(1.0, 5.0),
        name=f"{data.name}-ratings",
        meta=dict(data.meta),
    )


# -------------------------------------------------------------------------------------------- oracle
def oracle_accuracy(
    comparisons: PreferenceData | pd.DataFrame,
    truth: PopulationTruth | None = None,
    *,
    by_person: bool = False,
) -> dict[str, float] | pd.DataFrame:
    """How well the true reward predicts these labels.

    ``bayes``: mean over pairs of max(p, 1 - p), p = P(chosen > rejected) under the true reward and label noise
    (the best any model can expect). ``realized``: share of pairs where the true reward ranks the chosen response
    higher (ties count 1/2). With ``by_person`` one row per person (columns ``n, bayes, realized``).
    """
    if isinstance(comparisons, PreferenceData):
        truth = truth or _truth_of(comparisons)
        comps = comparisons.comparisons
    else:
        comps = comparisons
    if truth is None:
        raise DataError(
            "oracle_accuracy needs the population's truth", field="truth", expected="a PopulationTruth"
        )
    comps = comps[~comps["tie"].astype(bool)] if "tie" in comps.columns else comps
    u = truth.user_index(comps["user_id"].to_numpy())
    diff = truth._reward_idx(u, truth.item_index(comps["chosen_id"].to_numpy())) - truth._reward_idx(
        u, truth.item_index(comps["rejected_id"].to_numpy())
    )
    p = _sigmoid(diff / truth.temperature)
    bayes = np.maximum(p, 1 - p)
    realized = (diff > 0) + 0.5 * (diff == 0)
    if by_person:
        df = pd.DataFrame({"user_id": comps["user_id"].to_numpy(), "bayes": bayes, "realized": realized})
        g = df.groupby("user_id", sort=True)
        return pd.DataFrame({"n": g.size(), "bayes": g["bayes"].mean(), "realized": g["realized"].mean()})
    return {
        "n": int(len(p)),
        "bayes": float(bayes.mean()) if len(p) else float("nan"),
        "realized": float(realized.mean()) if len(p) else float("nan"),
    }


def preference_agreement(
    truth: PopulationTruth, n_pairs: int = 20000, *, include_harm: bool = False, seed: int = 0
) -> float:
    """How alike people are: the share of (random person pair, random same-prompt response pair) where both
    persons' true rewards order the responses the same way (harmful responses excluded by default)."""
    rng = np.random.default_rng(seed)
    N = len(truth.user_ids)
    cand = np.arange(len(truth.item_ids)) if include_harm else np.flatnonzero(truth.item_attrs[:, HARM] == 0)
    by_prompt = pd.Series(cand).groupby(truth.item_prompt[cand]).apply(np.asarray)
    by_prompt = by_prompt[by_prompt.map(len) >= 2]
    pi = rng.integers(len(by_prompt), size=n_pairs)
    a = np.empty(n_pairs, int)
    b = np.empty(n_pairs, int)
    for k, arr in enumerate(by_prompt.to_numpy()):
        sel = np.flatnonzero(pi == k)
        x = rng.integers(len(arr), size=len(sel))
        y = rng.integers(len(arr) - 1, size=len(sel))
        a[sel], b[sel] = arr[x], arr[y + (y >= x)]
    u = rng.integers(N, size=n_pairs)
    v = rng.integers(N, size=n_pairs)
    du = truth._reward_idx(u, a) - truth._reward_idx(u, b)
    dv = truth._reward_idx(v, a) - truth._reward_idx(v, b)
    return float(np.mean(np.sign(du) == np.sign(dv)))


# ---------------------------------------------------------------------------------------------- summary / io
def population_summary(data: PreferenceData, test: PreferenceData | None = None) -> dict[str, Any]:
    """The numbers a reader checks first (JSON-ready)."""
    truth = _truth_of(data)
    dom = truth.dominant_profile
    summary = {
        "persons": int(len(truth.user_ids)),
        "prompts": int(len(truth.prompts)),
        "heldout_prompts": int(truth.heldout_prompts.sum()),
        "domains": list(truth.domains),
        "items": int(len(truth.item_ids)),
        "harmful_items": int(truth.item_attrs[:, HARM].sum()),
        "comparisons": int(len(data.comparisons)),
        "profiles": {n: int((dom == j).sum()) for j, n in enumerate(truth.profile_names)},
        "adversarial_persons": int(truth.adversarial.sum()),
        "alpha": data.meta.get("config", {}).get("alpha"),
        "temperature": float(truth.temperature),
        "context_dependence": float(truth.context_dependence),
        "oracle_accuracy": oracle_accuracy(data, truth),
        "agreement_between_persons": preference_agreement(truth),
    }
    if test is not None:
        summary["heldout_comparisons"] = int(len(test.comparisons))
        summary["heldout_oracle_accuracy"] = oracle_accuracy(test, truth)
    return summary


def _without_truth(data: PreferenceData) -> PreferenceData:
    out = data.copy()
    out.meta = {k: v for k, v in data.meta.items() if k != "truth"}
    return out


def write_population(
    data: PreferenceData, out: str | Path, test: PreferenceData | None = None
) -> dict[str, Any]:
    """Write ``population.parquet`` (the training data, lossless canonical Parquet), ``heldout.parquet`` (the
    held-out comparisons, if given), ``truth.json`` and ``summary.json`` into ``out``; every file goes to a
    temporary path first and is renamed into place."""
    from personalign.data.files import write_text_atomic
    from personalign.data.tables import write_data  # the canonical lossless writer (atomic)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth = _truth_of(data)
    write_data(_without_truth(data), out / "population.parquet")
    if test is not None:
        write_data(_without_truth(test), out / "heldout.parquet")
    summary = population_summary(data, test)
    write_text_atomic(out / "truth.json", json.dumps({"config": data.meta.get("config"), **truth.to_dict()}))
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def read_population(path: str | Path) -> tuple[PreferenceData, PreferenceData | None]:
    """Read what :func:`write_population` wrote: (training data, held-out comparisons or None), truth attached."""
    from personalign.data.tables import read_parquet

    path = Path(path)
    for f in ("population.parquet", "truth.json"):
        if not (path / f).is_file():
            raise DataError(
                f"{f} is missing", file=str(path), expected="a folder written by `personalign data synth`"
            )
    truth = PopulationTruth.from_dict(json.loads((path / "truth.json").read_text(encoding="utf-8")))
    data = read_parquet(path / "population.parquet")
    data.meta["truth"] = truth
    test = None
    if (path / "heldout.parquet").is_file():
        test = read_parquet(path / "heldout.parquet")
        test.meta["truth"] = truth
    return data, test


def favourite_responses(data: PreferenceData, prompt: str | None = None) -> pd.DataFrame:
    """Who likes what: for one prompt (default: the first training prompt), the response of highest true reward
    for one person nearest each profile and for one adversarial person, if any.

    Columns ``prompt``, ``person``, ``profile`` (or ``"adversarial"``), ``response``."""
    truth = _truth_of(data)
    p = truth.prompts.index(prompt) if prompt is not None else int(np.flatnonzero(~truth.heldout_prompts)[0])
    m = np.flatnonzero(truth.item_prompt == p)
    d = truth.prompt_domain[p]
    who = [
        (truth.profile_names[j], int(np.flatnonzero(truth.dominant_profile == j)[0]))
        for j in range(len(truth.profile_names))
        if (truth.dominant_profile == j).any()
    ]
    if truth.adversarial.any():
        who.append(("adversarial", int(np.flatnonzero(truth.adversarial)[0])))
    rows = []
    for name, u in who:
        w = truth.domain_weights()[u, d] if truth.context_dependence else truth.weights[u]
        best = m[int(np.argmax(truth.item_attrs[m] @ w))]
        rows.append((truth.prompts[p], truth.user_ids[u], name, truth_text(data, truth.item_ids[best])))
    return pd.DataFrame(rows, columns=["prompt", "person", "profile", "response"])


def truth_text(data: PreferenceData, item_id: str) -> str:
    items = data.items
    return str(items.loc[items["item_id"] == item_id, "text"].iloc[0])
