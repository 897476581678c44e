"""Feedback: a comparison or rating is stored (append-only) and folded into the person's posterior in the same
transaction; the reply comes only after the commit. On SQLite the worker's group committer
(:class:`personalign.serve.writer.GroupCommitter`) stores many judgments per commit; on PostgreSQL each request
commits its own transaction, under the person's row lock."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from personalign.serve import db, schemas
from personalign.serve.deps import ERRORS, Context, Ctx, PersonPath
from personalign.serve.writer import store_feedback

router = APIRouter(tags=["persons"], responses=ERRORS)

# the reply names the stored judgment, which undo takes (an OpenAPI link: clients and fuzzers can follow it)
UNDO_LINK = {
    "UndoJudgment": {
        "operationId": "undo_judgment",
        "parameters": {"person_id": "$request.path.person_id", "judgment_id": "$response.body#/judgment_id"},
        "description": "Undo the judgment just stored.",
    }
}


@router.post(
    "/v1/persons/{person_id}/feedback",
    response_model=schemas.FeedbackOut,
    summary="Store a comparison or rating and update the person's posterior online (committed before the reply).",
    responses={200: {"links": UNDO_LINK}},
)
async def feedback(
    body: schemas.Feedback, person_id: str = PersonPath, ctx: Context = Ctx
) -> schemas.FeedbackOut:
    svc = ctx.svc
    if svc.committer is not None:  # resolved after the batch holding this judgment has committed
        return await asyncio.wrap_future(svc.committer.submit(person_id, body, ctx.st, ctx.key))
    return await run_in_threadpool(_store_alone, ctx, person_id, body)


def _store_alone(ctx: Context, person_id: str, body: schemas.Feedback) -> schemas.FeedbackOut:
    """One judgment in a transaction of its own (PostgreSQL, or SQLite without group commit)."""
    with ctx.svc.person_lock(person_id), db.write_tx(ctx.svc.engine) as conn:
        return store_feedback(ctx.svc, conn, ctx.st, person_id, body, ctx.key)
