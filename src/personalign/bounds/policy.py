"""Policy files: the universal constraints, what may be personalized, the trust region and monitor thresholds.

A policy is a YAML or TOML file validated with pydantic. Every error names the file, the field path (e.g.
``constraints[1].threshold``) and what was expected, and is raised as :class:`personalign.ConfigError`.
Presets ship in ``personalign/bounds/policies``: ``rules`` (pattern rules only), ``default`` (learned harmlessness
and consensus heads plus rules) and ``synthetic`` (the synthetic population's moderation label). :func:`load_policy`
is the one loader: every place that accepts a policy (service, CLI, TRL, DPO, generation) takes a preset or a path.

Example (YAML, see ``personalign/bounds/policies/default.yaml``)::

    name: default
    constraints:
      - name: harmless
        scorer: {type: harmlessness}          # the packaged head; or {type: harmlessness, path: DIR}
        threshold: calibrated                 # the head's calibrated threshold, or a number
        epsilon: 0.1                          # optional: at most 10% of harmful items pass ...
        confidence: 0.95                      # ... with 95% confidence (calibrated on held-out items)
        direction: min                        # satisfied when score >= threshold ("max": score <= threshold)
        severity: block
        meaning: the response helps with harm most people reject
    personalize: {dims: all, fixed: []}
    trust_region: {rho: 2.0}
    consensus: {enabled: true, gamma: 1.0}
    fallback: {mode: refuse, refusal_text: "I can't help with that."}
    monitors: {...}
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from personalign.errors import ConfigError

POLICY_DIR = Path(__file__).resolve().parent / "policies"

# The callables a policy file may name without the operator allowing more: the project's own scorers. A policy is
# data; a `callable` scorer naming anything else (e.g. 'os:system') is refused before its module is imported.
DEFAULT_CALLABLES: frozenset[str] = frozenset({"personalign.bounds.scorers:response_length"})
_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def allowed_callables(allow: Iterable[str] | None = None) -> frozenset[str]:
    """The allow-list: :data:`DEFAULT_CALLABLES` plus ``allow`` (each ``module:name``; ConfigError otherwise)."""
    extra = [str(a).strip() for a in (allow or [])]
    for a in extra:
        if not _TARGET.fullmatch(a):
            raise ConfigError(
                f"--allow-callable {a!r}: expected 'module:name' (e.g. 'mypkg.scorers:toxicity')"
            )
    return DEFAULT_CALLABLES | frozenset(extra)


def check_callable(target: str | None, allow: frozenset[str], source: str | None) -> None:
    """Refuse (ConfigError) a scorer target that is not on the allow-list; nothing is imported here."""
    if target not in allow:
        raise ConfigError(
            f"{source or '<policy>'}: scorer {target!r}: not on the allow-list "
            f"(pass --allow-callable {target} to allow it)"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScorerSpec(_Strict):
    """Which scorer a constraint uses.

    ``type``: ``harmlessness`` (a trained :class:`HarmlessnessHead`; ``path`` = its artifact dir, default the packaged
    one), ``consensus`` (a :class:`ConsensusScorer`; ``path`` likewise), ``regex`` (``patterns``: a list of regular
    expressions, score = number of matches), ``callable`` (``target``: ``module:function`` taking
    ``(prompts, responses)`` and returning one score per response), ``attribute`` (``column`` of an items table
    or a key of per-response metadata, e.g. a synthetic population's ``attr_harm``).
    """

    type: Literal["harmlessness", "consensus", "regex", "callable", "attribute"]
    path: str | None = None
    patterns: list[str] | None = None
    target: str | None = None
    column: str | None = None
    ignore_case: bool = True
    on: Literal["response", "prompt_response"] = "response"

    @model_validator(mode="after")
    def _needs(self) -> ScorerSpec:
        if self.type == "regex" and not self.patterns:
            raise ValueError("a regex scorer needs 'patterns': a non-empty list of regular expressions")
        if self.type == "callable" and (not self.target or ":" not in self.target):
            raise ValueError("a callable scorer needs 'target': 'module:function'")
        if self.type == "attribute" and not self.column:
            raise ValueError("an attribute scorer needs 'column': the metadata column to read")
        if self.type == "regex":
            import re

            for i, p in enumerate(self.patterns or []):
                try:
                    re.compile(p)
                except re.error as exc:
                    raise ValueError(
                        f"patterns[{i}] {p!r} is not a valid regular expression: {exc}"
                    ) from None
        return self


class ConstraintSpec(_Strict):
    """One universal constraint: satisfied when ``score >= threshold`` (direction min) or ``<=`` (max)."""

    name: str = Field(min_length=1)
    scorer: ScorerSpec
    threshold: float | Literal["calibrated"] = "calibrated"
    direction: Literal["min", "max"] = "min"
    severity: Literal["block", "warn"] = "block"
    meaning: str = ""
    # a stated miss rate: with threshold 'calibrated', the threshold is set on the scorer's held-out calibration
    # items so that at most a share epsilon of harmful items pass, with probability confidence (see calibrate.py)
    epsilon: float | None = Field(default=None, gt=0, lt=1)
    confidence: float | None = Field(default=None, gt=0, lt=1)
    calibration: Literal["binomial", "conformal"] = "binomial"

    @model_validator(mode="after")
    def _promise(self) -> ConstraintSpec:
        if self.epsilon is None and self.confidence is not None:
            raise ValueError("'confidence' needs 'epsilon' (the miss rate it is the confidence of)")
        if self.epsilon is not None and self.threshold != "calibrated":
            raise ValueError(
                "'epsilon' needs threshold: calibrated (a number cannot keep a stated miss rate)"
            )
        if self.epsilon is not None and self.confidence is None:
            self.confidence = 0.95
        return self

    @field_validator("threshold")
    @classmethod
    def _finite(cls, v: float | str) -> float | str:
        # a NaN threshold compares false with every score: the constraint would silently never (or always) hold
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"must be a finite number or 'calibrated', got {v}")
        return v


class PersonalizeSpec(_Strict):
    """Which latent dimensions of w_u may move away from the population; the others stay at the prior mean."""

    dims: Literal["all"] | list[int] = "all"
    fixed: list[int] = Field(default_factory=list)

    @field_validator("dims", "fixed")
    @classmethod
    def _nonneg(cls, v: Any) -> Any:
        if isinstance(v, list) and any(i < 0 for i in v):
            raise ValueError("dimension indices must be >= 0")
        return v


class TrustRegionSpec(_Strict):
    """||w_u - m||_{Sigma^-1} <= rho around the population prior N(m, Sigma); ``rho: null`` disables it."""

    rho: float | None = Field(default=2.0, ge=0)


class ConsensusSpec(_Strict):
    """Deviation allowed on an item shrinks with agreement a: scale s(a) = (1 - a)^gamma of (r_u - r_pop)."""

    enabled: bool = True
    gamma: float = Field(default=1.0, ge=0)
    min_agreement: float = Field(default=0.5, ge=0, le=1)


class FallbackSpec(_Strict):
    """What to do when no candidate satisfies the constraints."""

    mode: Literal["refuse", "least_violating"] = "refuse"
    refusal_text: str = "I can't help with that, but I'm happy to help with something else."


class FilterBubbleSpec(_Strict):
    n_clusters: int = Field(default=8, ge=2)
    min_entropy_ratio: float = Field(default=0.5, ge=0, le=1)
    default_diversity: float = Field(default=0.0, ge=0, le=1)


class LockInSpec(_Strict):
    half_life: float | None = Field(default=200.0, gt=0)
    drift_window: int = Field(default=20, ge=2)
    drift_threshold: float = Field(default=0.2, ge=0, le=1)
    max_overconfidence: float = Field(default=0.15, ge=0, le=1)


class SycophancySpec(_Strict):
    margin: float = Field(default=0.1, ge=0, le=1)
    probes: str | None = None


class PoisoningSpec(_Strict):
    person_weight_cap: float | None = Field(default=None, gt=0)
    max_shift: float = Field(default=0.05, ge=0, le=1)


class MonitorSpec(_Strict):
    filter_bubble: FilterBubbleSpec = Field(default_factory=FilterBubbleSpec)
    lock_in: LockInSpec = Field(default_factory=LockInSpec)
    sycophancy: SycophancySpec = Field(default_factory=SycophancySpec)
    poisoning: PoisoningSpec = Field(default_factory=PoisoningSpec)


class Policy(_Strict):
    """A validated policy. ``source`` is the file it came from (relative scorer paths resolve against it)."""

    name: str = "policy"
    version: int = 1
    description: str = ""
    constraints: list[ConstraintSpec] = Field(default_factory=list)
    personalize: PersonalizeSpec = Field(default_factory=PersonalizeSpec)
    trust_region: TrustRegionSpec = Field(default_factory=TrustRegionSpec)
    consensus: ConsensusSpec = Field(default_factory=ConsensusSpec)
    fallback: FallbackSpec = Field(default_factory=FallbackSpec)
    monitors: MonitorSpec = Field(default_factory=MonitorSpec)
    source: str | None = None
    # the allow-list this policy was vetted against (load_policy's ``allow``); build_scorer imports nothing else
    _allowed: frozenset[str] = PrivateAttr(default=DEFAULT_CALLABLES)

    @property
    def allowed(self) -> frozenset[str]:
        """The callables this policy's scorers may import (see :func:`allowed_callables`)."""
        return self._allowed

    def allow(self, allow: Iterable[str] | None) -> Policy:
        """Vet the policy against the allow-list (defaults plus ``allow``); ConfigError names the first callable
        scorer not on it. Returns self, now carrying that list."""
        allowed = self._allowed | allowed_callables(allow)
        for c in self.constraints:
            if c.scorer.type == "callable":
                check_callable(c.scorer.target, allowed, self.source)
        self._allowed = allowed
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Policy:
        seen: set[str] = set()
        for c in self.constraints:
            if c.name in seen:
                raise ValueError(f"constraint name {c.name!r} appears twice (names must be unique)")
            seen.add(c.name)
        return self

    def resolve(self, path: str | None) -> Path | None:
        """A path from the policy, relative to the policy file's folder."""
        if path is None:
            return None
        p = Path(path).expanduser()
        if not p.is_absolute() and self.source:
            p = Path(self.source).resolve().parent / p
        return p


_TYPE_TAGS = {"float", "int", "str", "bool", "list", "dict", "none"}


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).lower() in _TYPE_TAGS or "[" in str(part) or "-" in str(part):
            continue  # pydantic's union-branch tags (float, literal['calibrated'], ...) are not field names
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _explain(err: dict[str, Any]) -> str:
    if err.get("type") == "missing":
        return "is required but missing"
    if err.get("type") == "extra_forbidden":
        return "is not a known field (check the spelling)"
    msg = str(err.get("msg", "invalid"))
    for pre in ("Value error, ", "Assertion failed, "):
        if msg.startswith(pre):
            return msg[len(pre) :]
    if msg.startswith("Input should be "):
        msg = msg[len("Input should be ") :].split(", unable to")[0]
        return f"expected {msg}"
    return msg


def policy_from_dict(raw: Any, source: str = "<policy>", allow: Iterable[str] | None = None) -> Policy:
    """Validate a parsed policy; errors name ``source``, the field path and what was expected. A callable
    scorer must be on the allow-list (the project's own scorers plus ``allow``)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        pol = Policy.model_validate({**raw, "source": source})
    except ValidationError as exc:
        by_path: dict[str, list[str]] = {}
        got: dict[str, Any] = {}
        for e in exc.errors():
            path = _field_path(e["loc"])
            text = _explain(e)
            if text not in by_path.setdefault(path, []):
                by_path[path].append(text)
            if not isinstance(e.get("input"), dict | list) and e.get("type") != "missing":
                got[path] = e.get("input")
        lines = []
        for path, texts in by_path.items():
            exp = [t[len("expected ") :] for t in texts if t.startswith("expected ")]
            other = [t for t in texts if not t.startswith("expected ")]
            parts = other + ([f"expected {' or '.join(exp)}"] if exp else [])
            tail = f", got {got[path]!r}" if path in got and exp else ""
            lines.append(f"{source}: field '{path}': {'; '.join(parts)}{tail}")
        raise ConfigError("invalid policy: " + " | ".join(lines)) from None
    return pol.allow(allow)


def load_policy(spec: str | Path | Policy | Mapping[str, Any], allow: Iterable[str] | None = None) -> Policy:
    """The one policy loader: a packaged preset name (see :func:`list_policies`), a ``.yaml``/``.yml``/``.toml``
    file, an already-parsed mapping, or a :class:`Policy` (vetted again with ``allow``).

    A name that is neither an existing file nor a preset raises a :class:`ConfigError` naming the presets.
    A ``callable`` scorer must name a callable on the allow-list: the project's own scorers
    (:data:`DEFAULT_CALLABLES`) plus ``allow`` (``module:name`` strings, the CLI's ``--allow-callable``).
    """
    if isinstance(spec, Policy):
        return spec.allow(allow)
    if isinstance(spec, Mapping):
        return policy_from_dict(dict(spec), allow=allow)
    p = Path(spec)
    if not p.is_file() and p.name == str(spec) and not p.suffix and (POLICY_DIR / f"{p.name}.yaml").is_file():
        p = POLICY_DIR / f"{p.name}.yaml"  # a bare preset name (an existing file of that name wins)
    if p.is_dir():
        raise ConfigError(
            f"{p}: is a folder; expected a policy file or a preset ({', '.join(list_policies())})"
        )
    if not p.exists():
        what = "unknown policy preset" if p.name == str(spec) and not p.suffix else "policy file not found"
        raise ConfigError(f"{p}: {what} (presets: {', '.join(list_policies())}; or give a .yaml/.toml file)")
    return _read_policy_file(p, allow)


def _read_policy_file(p: Path, allow: Iterable[str] | None) -> Policy:
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (expected a UTF-8 .yaml/.toml policy)") from None
    try:
        if p.suffix.lower() == ".toml":
            raw = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml", ""):
            raw = yaml.safe_load(text)
        else:
            raise ConfigError(f"{p}: expected a .yaml, .yml or .toml policy file")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    return policy_from_dict(raw, source=str(p), allow=allow)


def list_policies() -> list[str]:
    """Names of the policy presets shipped with the package (``rules``, ``default``, ``synthetic``)."""
    return sorted(q.stem for q in POLICY_DIR.glob("*.yaml"))
