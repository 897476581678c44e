"""Request and response bodies of the HTTP API (pydantic v2); every field is documented in the OpenAPI schema.

Size limits live here (text length, candidate and pair counts) so that a request over a limit is rejected with a
422 before any work is done; the body-size limit (413) is enforced earlier, by :mod:`personalign.serve.app`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from personalign.bounds.explain import PersonExplanation

# Limits (per request). Chosen so that one request costs at most a few ms of featurization with cached texts.
MAX_TEXT_CHARS = 8_000
MAX_CANDIDATES = 64
MAX_PAIRS = 256
MAX_PERSON_ID_CHARS = 128
MAX_BODY_BYTES = 512 * 1024

# no NUL character in any stored or looked-up text: PostgreSQL cannot store one, and SQLite must refuse it alike
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS, pattern=NO_NUL)]
NonEmptyText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS, pattern=NO_NUL)]
# an empty key would be one idempotency key shared by every client, so it is refused
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_NUL)]
# finite and a JSON number: NaN, Infinity and 1e400 (read as inf) are refused, and so is a boolean (strict)
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]


def _integral(value: Any) -> Any:
    """A float with no fractional part as the integer it is: an integer as JSON Schema defines it is 26 or
    26.0, never "26", 26.5 or true (the bodies are strict)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


PERSON_ID_REGEX = r"^[A-Za-z0-9_.:@-]{1,128}$"
PERSON_ID_PATTERN = re.compile(PERSON_ID_REGEX)


class _Body(BaseModel):
    # strict: a JSON value of another type is refused, not coerced ("true" or 1 for a boolean, "3" for a number),
    # so what the schema documents is exactly what is accepted
    model_config = ConfigDict(extra="forbid", strict=True)


class ComparisonFeedback(_Body):
    """The person preferred ``chosen`` over ``rejected`` for ``prompt`` (or found them equal with ``tie``)."""

    kind: Literal["comparison"] = Field(description="Selects the body type (required).")
    prompt: Text = Field("", description="The prompt both responses answer (may be empty).")
    chosen: NonEmptyText = Field(description="The preferred response.")
    rejected: NonEmptyText = Field(description="The other response.")
    tie: bool = Field(False, description="True when the person judged both equally good.")
    weight: FiniteFloat = Field(1.0, gt=0, le=100, description="Importance weight of this judgment.")
    request_id: RequestId | None = Field(
        None, description="Client idempotency key: a retried request with the same id is stored once."
    )


class RatingFeedback(_Body):
    """The person rated ``response`` to ``prompt``. Ratings become comparisons with the person's earlier ratings
    of the same prompt (the higher rated is chosen), as in :meth:`PreferenceData.to_comparisons`."""

    kind: Literal["rating"] = Field(description="Selects the body type (required).")
    prompt: Text = Field("", description="The prompt (ratings of the same prompt are compared).")
    response: NonEmptyText = Field(description="The rated response.")
    rating: FiniteFloat = Field(description="The rating (any scale; only the order within a prompt is used).")
    weight: FiniteFloat = Field(1.0, gt=0, le=100)
    request_id: RequestId | None = None


# ``kind`` is required in both bodies, so the OpenAPI discriminator says exactly what is accepted
Feedback = Annotated[ComparisonFeedback | RatingFeedback, Field(discriminator="kind")]


class FeedbackOut(BaseModel):
    person_id: str
    judgment_id: int = Field(description="Id of the stored (committed) judgment.")
    duplicate: bool = Field(False, description="True when request_id was already stored (nothing new added).")
    pairs_folded: int = Field(description="Comparisons folded into the posterior by this judgment.")
    n_judgments: int = Field(description="Judgments stored for this person.")
    n_folded: int = Field(description="Comparisons folded into the posterior so far (Posterior.n).")
    model_version: str


class ScoreIn(_Body):
    prompt: Text = Field("", description="The prompt the candidates answer.")
    candidates: list[Text] = Field(
        min_length=1, max_length=MAX_CANDIDATES, description="Candidate responses."
    )


class ConstraintReport(BaseModel):
    admissible: list[bool] = Field(description="Per candidate: does it satisfy every universal constraint?")
    detail: list[dict[str, Any]] = Field(description="Per candidate: per-constraint value and pass/fail.")


class ScoreOut(BaseModel):
    person_id: str
    rewards: list[float] = Field(description="Personalized reward per candidate (higher is better).")
    population_rewards: list[float] = Field(
        description="Reward of the population (prior mean) per candidate."
    )
    model_version: str
    personalized: bool = Field(
        description="False when the person is served the population prior: not in the model's training data "
        "and no feedback stored yet. A trained person is personalized from the first request (learned posterior)."
    )
    constraints: ConstraintReport | None = Field(None, description="Present when a bounds policy is loaded.")
    bounded_rewards: list[float] | None = Field(
        None,
        description="With a policy: R_u = 2 * admissible + sigmoid(trust-region personal reward), so every "
        "admissible candidate scores above every inadmissible one whatever the person's parameters.",
    )


class RankIn(ScoreIn):
    top_k: Annotated[int, Field(ge=1, le=MAX_CANDIDATES), BeforeValidator(_integral)] | None = Field(
        None, description="Return only the best k (best-of-n: 1)."
    )


class RankedCandidate(BaseModel):
    index: int
    text: str
    reward: float = Field(description="Personal reward (with a policy: after the trust-region projection).")
    admissible: bool = True
    bounded_reward: float | None = None
    violations: list[str] = Field(default_factory=list)


class RankOut(BaseModel):
    person_id: str
    ranking: list[RankedCandidate] = Field(description="Best first; with a policy, admissible ones first.")
    best: RankedCandidate
    bounded: bool = Field(description="True when a bounds policy decided the order.")
    fallback: bool = Field(
        False, description="No candidate satisfies the constraints (policy fallback used)."
    )
    refused: bool = Field(False, description="The policy's fallback is to refuse: see ``choice``.")
    choice: str = Field(description="What to show: the best candidate, or the policy's refusal text.")
    model_version: str


class Pair(_Body):
    prompt: Text = ""
    a: NonEmptyText
    b: NonEmptyText


class SuggestIn(_Body):
    pairs: list[Pair] = Field(
        min_length=1, max_length=MAX_PAIRS, description="Candidate questions (unordered pairs)."
    )


class SuggestOut(BaseModel):
    person_id: str
    index: int = Field(description="Position in ``pairs`` of the most informative question.")
    pair: Pair
    model_version: str


class PosteriorSummary(BaseModel):
    k: int = Field(description="Number of personal parameters.")
    mean: list[float]
    mean_norm: float
    distance_from_prior: float = Field(description="Mahalanobis distance of the mean from the prior mean.")
    cov_trace: float
    cov_logdet: float
    prior_cov_trace: float
    n_folded: int


class ProfileOut(BaseModel):
    person_id: str
    exists: bool = Field(
        description="Whether the service stores anything for the person (feedback or a key)."
    )
    source: Literal["prior", "trained", "feedback"] = Field(
        description="Where the posterior comes from: 'prior' (unknown to the model, no feedback: the "
        "population), 'trained' (the posterior the model learned for this person, no feedback yet), "
        "'feedback' (stored feedback folded onto the starting belief: the learned posterior if trained, "
        "else the prior)."
    )
    trained: bool = Field(description="Whether the model learned this person.")
    starts_from: Literal["trained", "prior"] = Field(
        "prior",
        description="The belief stored feedback is folded onto: 'trained' (the posterior the model learned for "
        "this person) or 'prior' (the population: a person the model does not know, or one who reset).",
    )
    n_training_judgments: int | None = Field(
        description="Comparisons of this person the model was trained on (0 if not trained; null when the "
        "model artifact does not record it)."
    )
    n_judgments: int = Field(description="Feedback judgments stored by the service for this person.")
    n_comparisons: int
    n_ratings: int
    posterior: PosteriorSummary
    model_version: str
    created_at: str | None = None
    updated_at: str | None = None
    monitors: dict[str, Any] | None = Field(
        None, description="Bounds monitor state, when bounds provides monitors."
    )
    explanation: PersonExplanation | None = Field(
        None,
        description="What the model believes the person prefers, in words: each personal direction named by "
        "texts and descriptors with the person's place on it and its uncertainty, where the belief came from, "
        "the bounds' effect on the last pairs they judged and the monitors' state (the same as `personalign "
        "explain`).",
    )


class JudgmentOut(BaseModel):
    """One stored judgment, as the person gave it."""

    id: int = Field(description="The judgment's id (what undo takes).")
    kind: Literal["comparison", "rating"]
    prompt: str
    chosen: str | None = None
    rejected: str | None = None
    tie: bool = False
    response: str | None = None
    rating: float | None = None
    weight: float
    request_id: str | None = None
    created_at: str


class JudgmentsOut(BaseModel):
    person_id: str
    judgments: list[JudgmentOut] = Field(description="Oldest first.")
    total: int = Field(description="Judgments stored for the person (all pages).")
    limit: int
    offset: int


class UndoOut(BaseModel):
    """What an undo left: the posterior recomputed from the person's start and their remaining judgments."""

    person_id: str
    undone: int = Field(description="Id of the judgment removed.")
    n_judgments: int = Field(description="Judgments still stored.")
    n_folded: int = Field(description="Comparisons folded into the recomputed posterior (Posterior.n).")
    starts_from: Literal["trained", "prior"]
    model_version: str


class ResetOut(BaseModel):
    """A reset deletes the person's judgments and serves them the population prior from then on, even when the
    model was trained on them (their learned posterior is set aside; deleting the person restores it)."""

    person_id: str
    deleted_judgments: int
    starts_from: Literal["prior"] = "prior"
    model_version: str


class DeleteOut(BaseModel):
    """What a delete removed. Only what the service stores goes (feedback, its posterior, keys); a person the
    model was trained on is part of the model, so afterwards they are served their learned posterior again
    (profile ``source: "trained"``), as on their first request; anyone else goes back to the prior."""

    person_id: str
    deleted: dict[str, int] = Field(description="Rows removed per table (judgments, keys, persons).")


class KeyIn(_Body):
    label: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] = ""


class KeyOut(BaseModel):
    key: str = Field(description="The API key. Shown once; only its hash is stored.")
    key_id: str
    role: str
    person_id: str | None


class ReloadIn(_Body):
    model_dir: Annotated[str, StringConstraints(max_length=4096, pattern=NO_NUL)] | None = Field(
        None, description="New model directory (default: reload the current directory)."
    )
    policy: Annotated[str, StringConstraints(max_length=4096, pattern=NO_NUL)] | None = Field(
        None, description="New policy file (default: keep the current one)."
    )


class ReloadOut(BaseModel):
    model_version: str
    previous_version: str
    model_dir: str
    load_seconds: float
    generation: int = Field(
        description="The served-model generation now published; the other workers switch to it within "
        "the follow interval."
    )


class ErrorBody(BaseModel):
    status: int
    code: str
    message: str
    detail: Any = None


class ErrorOut(BaseModel):
    error: ErrorBody
