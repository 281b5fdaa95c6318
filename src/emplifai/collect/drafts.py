"""Server-side drafts: what a worker typed or chose under a lease, kept until they submit, so a closed tab, a dead
phone battery or a reload loses nothing. Only the claim's owner reads or writes its draft, only while the lease
is open, and only the task's own fields are kept (values cleaned, sizes bounded).
"""

from __future__ import annotations

import time

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from emplifai.collect.assign import Conflict, NotFound
from emplifai.collect.tx import is_sqlite, run_write
from emplifai.errors import UserError
from emplifai.evaluate.rubrics import METRICS
from emplifai.records import Kind
from emplifai.store.collect import Claim, ClaimStatus, Draft, Task
from emplifai.store.db import Store

# Generous: a draft keeps over-long text (the submit then says how much to cut) rather than losing it.
MAX_DRAFT_CHARS = 20_000
SCORES = frozenset("12345")


def allowed_fields(task: Task) -> dict[str, frozenset[str] | None]:
    """The form fields a task's draft may hold: text (None) or one of a set of values."""
    if task.kind == Kind.SITUATION:
        return {"situation": None}
    if task.kind == Kind.DIALOGUE:
        return {"patient": None, "supporter": None}
    return {f"score_{item['generation_id']}_{m}": SCORES for item in task.payload.get("items", []) for m in METRICS}


def _clean_text(value: str) -> str:
    # Control characters other than line breaks and tabs never belong in a draft (PostgreSQL rejects NUL).
    return "".join(ch for ch in value if ch in "\n\t" or not (ord(ch) < 32 or ord(ch) == 127))


def clean(task: Task, form: dict[str, str]) -> dict[str, str]:
    """The task's fields from a posted form; unknown keys are dropped, a bad score or a huge text refused."""
    out: dict[str, str] = {}
    for key, values in allowed_fields(task).items():
        raw = form.get(key)
        if raw is None or raw == "":
            continue
        if values is not None:
            if raw not in values:
                raise UserError("評価は1〜5の数字で選んでください")
            out[key] = raw
            continue
        text = _clean_text(raw.replace("\r\n", "\n"))
        if len(text) > MAX_DRAFT_CHARS:
            raise UserError(f"下書きは1項目{MAX_DRAFT_CHARS}文字までです（{len(text)}文字）")
        out[key] = text
    return out


def _open_claim(s: Session, claim_id: int, worker_id: int) -> tuple[Claim, Task]:
    q = select(Claim).where(Claim.id == claim_id, Claim.worker_id == worker_id)
    if not is_sqlite(s):
        q = q.with_for_update()  # two quick saves of one draft queue instead of racing to insert
    c = s.scalar(q)
    if c is None:
        raise NotFound("タスクが見つかりません")
    if c.status != ClaimStatus.LEASED:
        raise Conflict("このタスクは提出済みか返却・期限切れのため、下書きは保存できません")
    task = s.get(Task, c.task_id)
    assert task is not None
    return c, task


def save(store: Store, claim_id: int, worker_id: int, form: dict[str, str], *, now: float | None = None) -> int:
    """Replace the claim's draft with the form's fields; returns how many fields it holds."""

    def work(s: Session) -> int:
        c, task = _open_claim(s, claim_id, worker_id)
        fields = clean(task, form)
        row = s.get(Draft, c.id)
        if row is None:
            s.add(Draft(claim_id=c.id, fields=fields, updated_at=time.time() if now is None else now))
        else:
            row.fields, row.updated_at = fields, time.time() if now is None else now
        return len(fields)

    return run_write(store, work)


def load(s: Session, claim: Claim) -> dict[str, str]:
    """The draft of an open claim (empty when there is none or the claim is no longer open)."""
    if claim.status != ClaimStatus.LEASED:
        return {}
    row = s.get(Draft, claim.id)
    return dict(row.fields) if row is not None else {}


def discard(store: Store, claim_id: int) -> None:
    """After a submission: the draft has served its purpose."""
    run_write(store, lambda s: s.execute(delete(Draft).where(Draft.claim_id == claim_id)))
