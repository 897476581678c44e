"""A person's stored judgments: list them, undo one (the posterior is recomputed without it), reset to the
population (all of them go and the belief starts from the prior)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query
from starlette.exceptions import HTTPException

from personalign.serve import db, schemas
from personalign.serve.deps import ERRORS, Context, Ctx, PersonPath
from personalign.serve.service import start_source

router = APIRouter(tags=["persons"], responses=ERRORS)

MAX_PAGE = 1_000  # judgments in one page (each may hold two texts of MAX_TEXT_CHARS)
MAX_OFFSET = 2**62  # fits the databases' 64-bit integers
JudgmentPath = Path(
    ..., ge=1, le=MAX_OFFSET, description="The judgment's id (from the list or the feedback reply)."
)


@router.get(
    "/v1/persons/{person_id}/judgments",
    response_model=schemas.JudgmentsOut,
    summary="The person's stored judgments, oldest first, one page at a time.",
)
def list_judgments(
    person_id: str = PersonPath,
    limit: int = Query(100, ge=1, le=MAX_PAGE, description="Judgments per page."),
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Judgments to skip (oldest first)."),
    ctx: Context = Ctx,
) -> schemas.JudgmentsOut:
    with db.read_tx(ctx.svc.engine) as conn:
        ctx.authorize(conn, person_id)
        rows = db.person_judgments(conn, person_id, limit, offset)
        total = db.count_judgments(conn, person_id)
    return schemas.JudgmentsOut(
        person_id=person_id,
        judgments=[schemas.JudgmentOut(**judgment_dict(r)) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.delete(
    "/v1/persons/{person_id}/judgments/{judgment_id}",
    response_model=schemas.UndoOut,
    operation_id="undo_judgment",  # the target of the feedback reply's link
    summary="Undo one judgment: it is deleted and the posterior recomputed by folding the remaining judgments, "
    "in order, onto the person's start (learned posterior or prior).",
)
def undo_judgment(
    person_id: str = PersonPath, judgment_id: int = JudgmentPath, ctx: Context = Ctx
) -> schemas.UndoOut:
    svc, st = ctx.svc, ctx.st
    with svc.person_lock(person_id), db.write_tx(svc.engine) as conn:
        ctx.authorize(conn, person_id)
        row = svc.read_person(conn, person_id, for_update=True)
        if row is None or not db.delete_judgment(conn, person_id, judgment_id):
            raise HTTPException(404, f"person {person_id!r} has no judgment {judgment_id}")
        post, n = svc.refold(conn, st, person_id, row)
    return schemas.UndoOut(
        person_id=person_id,
        undone=judgment_id,
        n_judgments=n,
        n_folded=int(post.n),
        starts_from=start_source(st, person_id, row),
        model_version=st.version,
    )


@router.post(
    "/v1/persons/{person_id}/reset",
    response_model=schemas.ResetOut,
    summary="Reset to the population: delete the person's judgments and serve them the population prior "
    "(also when the model was trained on them).",
    description="A reset sets aside what the model learned about a person it was trained on: from then on "
    "their belief starts at the population prior and only feedback given after the reset moves it. Their API "
    "keys stay. Deleting the person (DELETE /v1/persons/{id}) removes the reset too, so a trained person is then "
    "served their learned posterior again.",
)
def reset_person(person_id: str = PersonPath, ctx: Context = Ctx) -> schemas.ResetOut:
    svc, st = ctx.svc, ctx.st
    with svc.person_lock(person_id), db.write_tx(svc.engine) as conn:
        ctx.authorize(conn, person_id)
        row = svc.read_person(conn, person_id, for_update=True)
        if row is None:
            if not st.is_trained(person_id):  # nothing stored, nothing learned: no such person
                raise HTTPException(404, f"no person {person_id!r}")
            db.ensure_person(conn, person_id)  # the row carries the reset (start from the prior)
        n = db.reset_person(conn, person_id)
    return schemas.ResetOut(person_id=person_id, deleted_judgments=n, model_version=st.version)


def judgment_dict(row: object) -> dict:
    """A stored judgment row as the API shows it (every column but the person's id)."""
    d = dict(row._mapping)  # type: ignore[attr-defined]
    d.pop("person_id", None)
    return d
