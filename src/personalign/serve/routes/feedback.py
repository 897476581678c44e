"""Feedback: a comparison or rating is stored (append-only) and folded into the person's posterior in the same
transaction, under the person's lock; the reply comes only after the commit."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Connection, select, update

from personalign.serve import db, schemas
from personalign.serve.deps import ERRORS, Context, Ctx, PersonPath
from personalign.serve.state import ModelState, judgment_pairs, usable_rating

router = APIRouter(tags=["persons"], responses=ERRORS)

# the reply names the stored judgment, which undo takes (an OpenAPI link: clients and fuzzers can follow it)
UNDO_LINK = {
    "UndoJudgment": {
        "operationId": "undo_judgment",
        "parameters": {"person_id": "$request.path.person_id", "judgment_id": "$response.body#/judgment_id"},
        "description": "Undo the judgment just stored.",
    }
}

# attributes judgment_pairs reads that one kind of feedback does not carry
_ABSENT = {"chosen": None, "rejected": None, "tie": False, "response": None, "rating": None}


@router.post(
    "/v1/persons/{person_id}/feedback",
    response_model=schemas.FeedbackOut,
    summary="Store a comparison or rating and update the person's posterior online (committed before the reply).",
    responses={200: {"links": UNDO_LINK}},
)
def feedback(body: schemas.Feedback, person_id: str = PersonPath, ctx: Context = Ctx) -> schemas.FeedbackOut:
    svc, st = ctx.svc, ctx.st
    with svc.person_lock(person_id), db.write_tx(svc.engine) as conn:
        ctx.authorize(conn, person_id)
        db.ensure_person(conn, person_id)
        row = svc.read_person(conn, person_id, for_update=True)
        dup = _duplicate(conn, st, person_id, body.request_id, row)
        if dup is not None:
            return dup
        post, _ = svc.current_posterior(conn, st, person_id, row)
        jid, judgment = _insert_judgment(conn, person_id, body)
        pairs = judgment_pairs(person_id, judgment, _rating_history(conn, person_id, jid, body))
        post = st.fold(post, pairs)
        n = row.n_judgments + 1
        conn.execute(
            update(db.persons)
            .where(db.persons.c.person_id == person_id)
            .values(
                posterior=json.dumps(post.to_dict()),
                model_version=st.version,
                n_judgments=n,
                revision=row.revision + 1,
                updated_at=db.now(),
            )
        )
    return schemas.FeedbackOut(
        person_id=person_id,
        judgment_id=jid,
        pairs_folded=len(pairs),
        n_judgments=n,
        n_folded=int(post.n),
        model_version=st.version,
    )


def _duplicate(
    conn: Connection, st: ModelState, person_id: str, request_id: str | None, row: Any
) -> schemas.FeedbackOut | None:
    """The reply to a retried request (same ``request_id``): what was stored then, nothing added now."""
    if request_id is None:
        return None
    j = db.judgments
    dup = conn.execute(select(j.c.id).where(j.c.person_id == person_id, j.c.request_id == request_id)).first()
    if dup is None:
        return None
    post = st.posterior_from_json(row.posterior, row.model_version)
    return schemas.FeedbackOut(
        person_id=person_id,
        judgment_id=dup.id,
        duplicate=True,
        pairs_folded=0,
        n_judgments=row.n_judgments,
        n_folded=int(post.n) if post is not None else 0,  # None: stored under another model version
        model_version=row.model_version or st.version,
    )


def _insert_judgment(conn: Connection, person_id: str, body: Any) -> tuple[int, SimpleNamespace]:
    """Append the judgment; returns its id and the stored values as the row :func:`judgment_pairs` reads."""
    values = body.model_dump(exclude={"kind"})
    values = {
        "person_id": person_id,
        "kind": body.kind,
        "created_at": db.now(),
        "prompt": values.pop("prompt", ""),
        **values,
    }
    jid = conn.execute(db.judgments.insert().values(**values).returning(db.judgments.c.id)).scalar_one()
    return jid, SimpleNamespace(**{**_ABSENT, **values})


def _rating_history(conn: Connection, person_id: str, jid: int, body: Any) -> dict[str, list]:
    """The person's earlier ratings of the same prompt (a rating is compared with them); empty for a comparison."""
    if body.kind != "rating":
        return {}
    j = db.judgments
    earlier = conn.execute(
        select(j.c.response, j.c.rating, j.c.weight)
        .where(j.c.person_id == person_id, j.c.kind == "rating", j.c.prompt == body.prompt, j.c.id < jid)
        .order_by(j.c.id)
    ).all()
    return {
        body.prompt: [
            (r.response, float(r.rating), float(r.weight)) for r in earlier if usable_rating(r.rating)
        ]
    }
