"""Person routes: the profile, the next question to ask, downloading and deleting everything about a person."""

from __future__ import annotations

import json

import pandas as pd
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from starlette.exceptions import HTTPException

from personalign.bounds.explain import explain_person
from personalign.data.files import to_jsonable
from personalign.serve import auth, db, schemas
from personalign.serve.deps import ERRORS, Context, Ctx, PersonPath
from personalign.serve.routes.judgments import judgment_dict
from personalign.serve.service import judgment_rows, start_source
from personalign.serve.state import all_pairs, summarize

router = APIRouter(tags=["persons"], responses=ERRORS)

MONITOR_WINDOW = 500  # judgments the profile's monitors look at
EXPLAIN_ANSWERS = 5  # the person's latest judged pairs the explanation shows the bounds' effect on


def recent_answers(rows: list, n: int) -> list[dict]:
    """The latest ``n`` comparisons a person judged, newest first, as answer sets ``{"prompt", "candidates"}``
    (the answers they saw, which the explanation checks against the bounds)."""
    pairs = [r for r in rows if r.kind == "comparison" and r.chosen is not None and r.rejected is not None]
    return [{"prompt": r.prompt or "", "candidates": [r.chosen, r.rejected]} for r in pairs[::-1][:n]]


@router.get(
    "/v1/persons/{person_id}",
    response_model=schemas.ProfileOut,
    summary="The person's profile: posterior summary, uncertainty, judgment counts, monitor state.",
)
def profile(person_id: str = PersonPath, ctx: Context = Ctx) -> schemas.ProfileOut:
    st = ctx.st
    post, row = ctx.read_person(person_id)
    j = db.judgments
    with db.read_tx(ctx.svc.engine) as conn:
        kinds = dict(
            conn.execute(
                select(j.c.kind, func.count()).where(j.c.person_id == person_id).group_by(j.c.kind)
            ).all()
        )
        # monitors look at the person's recent judgments (bounded, so a profile stays cheap)
        recent = judgment_rows(conn, person_id, limit=MONITOR_WINDOW)
    n = row.n_judgments if row else 0
    trained = st.is_trained(person_id)
    start = start_source(st, person_id, row)
    source = "feedback" if n else start
    monitors = st.monitors(post, all_pairs(person_id, recent))
    explanation = explain_person(
        st.model,
        person_id,
        post,
        source=source,
        n_training_judgments=st.n_training_judgments(person_id),
        n_feedback_judgments=n,
        policy=st.bounded,
        answers=recent_answers(recent, EXPLAIN_ANSWERS),
        monitors=monitors,
    )
    return schemas.ProfileOut(
        person_id=person_id,
        exists=row is not None,
        source=source,
        trained=trained,
        starts_from=start,
        n_training_judgments=st.n_training_judgments(person_id),
        n_judgments=n,
        n_comparisons=int(kinds.get("comparison", 0)),
        n_ratings=int(kinds.get("rating", 0)),
        posterior=schemas.PosteriorSummary(**summarize(post, st.prior())),
        model_version=st.version,
        created_at=row.created_at if row else None,
        updated_at=row.updated_at if row else None,
        monitors=monitors,
        explanation=explanation,
    )


@router.post(
    "/v1/persons/{person_id}/suggest",
    response_model=schemas.SuggestOut,
    summary="Which of these candidate questions (pairs) to ask the person next (most informative answer).",
)
def suggest(body: schemas.SuggestIn, person_id: str = PersonPath, ctx: Context = Ctx) -> schemas.SuggestOut:
    post, _ = ctx.read_person(person_id)
    questions = pd.DataFrame(
        {
            "prompt": [p.prompt for p in body.pairs],
            "chosen": [p.a for p in body.pairs],
            "rejected": [p.b for p in body.pairs],
        }
    )
    i = ctx.st.suggest(post, questions)
    return schemas.SuggestOut(person_id=person_id, index=i, pair=body.pairs[i], model_version=ctx.st.version)


@router.get(
    "/v1/persons/{person_id}/export",
    summary="Download everything stored about the person (a JSON attachment): profile, stored posterior, every "
    "judgment, and the person's API keys (ids, labels and dates; a key's secret is never stored).",
    response_description="A JSON file (Content-Disposition: attachment).",
)
def export_person(person_id: str = PersonPath, ctx: Context = Ctx) -> JSONResponse:
    prof = profile(person_id, ctx)  # authorizes, and says what the model believes
    with db.read_tx(ctx.svc.engine) as conn:
        ctx.authorize(conn, person_id)
        row = ctx.svc.read_person(conn, person_id)
        n = db.count_judgments(conn, person_id)
        rows = db.person_judgments(conn, person_id, limit=max(n, 1))
        keys = auth.list_keys(conn, person_id)
    stored = None
    if row is not None:
        stored = {
            "posterior": json.loads(row.posterior) if row.posterior else None,
            **{c: getattr(row, c) for c in ("model_version", "n_judgments", "revision", "start_from")},
            **{c: getattr(row, c) for c in ("created_at", "updated_at")},
        }
    body = {
        "format": "personalign-person-export",
        "format_version": 1,
        "exported_at": db.now(),
        "person_id": person_id,
        "profile": prof.model_dump(mode="json"),
        "stored": stored,
        "judgments": [judgment_dict(r) for r in rows],
        "keys": [{c: getattr(k, c) for c in ("key_id", "role", "label", "created_at")} for k in keys],
    }
    name = f"personalign-{person_id.replace(':', '_').replace('@', '_')}.json"
    return JSONResponse(to_jsonable(body), headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.delete(
    "/v1/persons/{person_id}",
    response_model=schemas.DeleteOut,
    summary="Delete everything stored about the person: judgments, posterior and API keys (admin, or the "
    "person's own key).",
    description="A person the model was trained on keeps the posterior the model learned for them (it is part "
    "of the model, not of the stored data): after the delete they are served from it again, with no feedback "
    "on top; anyone else is served the population prior.",
)
def delete_person(person_id: str = PersonPath, ctx: Context = Ctx) -> schemas.DeleteOut:
    with ctx.svc.person_lock(person_id), db.write_tx(ctx.svc.engine) as conn:
        ctx.authorize(conn, person_id)
        counts = db.delete_person(conn, person_id)
    if not any(counts.values()):
        raise HTTPException(404, f"no person {person_id!r}")
    return schemas.DeleteOut(person_id=person_id, deleted=counts)
