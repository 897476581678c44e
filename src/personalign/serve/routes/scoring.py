"""Scoring routes: personalized rewards and rankings of candidates, both through the model state's
:class:`~personalign.bounds.BoundedPolicy` (which bounds nothing when the service runs without a policy)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from personalign.data.files import to_jsonable
from personalign.serve import schemas
from personalign.serve.deps import ERRORS, Context, Ctx, PersonPath
from personalign.serve.service import start_source

router = APIRouter(tags=["persons"], responses=ERRORS)


@router.post(
    "/v1/persons/{person_id}/score",
    response_model=schemas.ScoreOut,
    summary="Personalized rewards of candidate responses (with a constraint report when a policy is loaded).",
)
def score(body: schemas.ScoreIn, person_id: str = PersonPath, ctx: Context = Ctx) -> schemas.ScoreOut:
    st = ctx.st
    post, row = ctx.read_person(person_id)
    d = st.bounded.evaluate(post, body.prompt, body.candidates, population=True)
    return schemas.ScoreOut(
        person_id=person_id,
        rewards=d["personal"].tolist(),
        population_rewards=d["population"].tolist(),
        model_version=st.version,
        personalized=bool(
            (row is not None and row.n_judgments > 0) or start_source(st, person_id, row) == "trained"
        ),
        constraints=constraint_report(d) if st.bounded.bounded else None,
        bounded_rewards=[float(x) for x in d["reward"]] if st.bounded.bounded else None,
    )


def constraint_report(d: dict[str, Any]) -> schemas.ConstraintReport:
    """Per candidate of an evaluation: does it satisfy every blocking constraint, each constraint's score (None
    where not finite) and the violated constraints."""
    names = list(d["scores"])
    detail = [
        {"scores": {n: to_jsonable(d["scores"][n][i]) for n in names}, "violations": list(v)}
        for i, v in enumerate(d["violations"])
    ]
    return schemas.ConstraintReport(admissible=[bool(x) for x in d["allowed"]], detail=detail)


@router.post(
    "/v1/persons/{person_id}/rank",
    response_model=schemas.RankOut,
    summary="Candidates best first for this person (best-of-n: top_k=1); under a policy, every candidate "
    "that satisfies the universal constraints ranks above every one that does not, and the personal part "
    "is bounded by the trust region.",
)
def rank(body: schemas.RankIn, person_id: str = PersonPath, ctx: Context = Ctx) -> schemas.RankOut:
    post, _ = ctx.read_person(person_id)
    rk = ctx.st.bounded.rank(post, body.prompt, body.candidates)
    bounded = ctx.st.bounded.bounded
    ranked = [
        schemas.RankedCandidate(
            index=int(i), text=body.candidates[int(i)], reward=float(rk.personal[i]),
            admissible=bool(rk.satisfied[i]), bounded_reward=float(rk.bounded[i]) if bounded else None,
            violations=list(rk.violations[i]),
        )
        for i in rk.order
    ]  # fmt: skip
    if body.top_k:
        ranked = ranked[: body.top_k]
    return schemas.RankOut(
        person_id=person_id,
        ranking=ranked,
        best=ranked[0],
        bounded=bounded,
        fallback=bool(rk.fallback),
        refused=bool(rk.refused),
        choice=str(rk.choice),
        model_version=ctx.st.version,
    )
