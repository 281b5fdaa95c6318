"""Completion codes and the reconciliation export.

After each submission the worker sees a completion code to paste back on the platform (CrowdWorks asks for
one per task). The lead exports, per platform ID and date range, the codes with approved/rejected counts and
the pay owed, and approves or rejects on the platform from that file (the platform's 30% rejection cap is
tracked by the app's review).
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from emplifai.dataset.formats import spreadsheet_safe
from emplifai.errors import UserError
from emplifai.store.collect import Campaign, Claim, ClaimStatus, PayEntry, User

# No 0/O, 1/I/L: a worker copies the code by hand on a phone as often as by paste.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_GROUPS = 3
CODE_GROUP_LEN = 4  # 12 symbols of 31: ~59 bits, unguessable; the unique index catches the impossible clash


def new_code(choice: Callable[[str], str] = secrets.choice) -> str:
    return "-".join("".join(choice(CODE_ALPHABET) for _ in range(CODE_GROUP_LEN)) for _ in range(CODE_GROUPS))


RECONCILE_COLUMNS = ("platform_id", "username", "display_name", "submitted", "approved", "rejected", "pending",
                     "amount_yen", "codes")


@dataclass(slots=True)
class WorkerLine:
    platform_id: str
    username: str
    display_name: str
    submitted: int = 0
    approved: int = 0  # accepted and paid (approved, or flagged for the lead: both carry pay)
    rejected: int = 0
    pending: int = 0  # not reviewed yet: decide on the platform only once this is 0
    amount_yen: int = 0
    codes: list[str] = field(default_factory=list)

    def as_row(self) -> dict[str, object]:
        return {"platform_id": self.platform_id, "username": self.username, "display_name": self.display_name,
                "submitted": self.submitted, "approved": self.approved, "rejected": self.rejected,
                "pending": self.pending, "amount_yen": self.amount_yen, "codes": " ".join(self.codes)}


def parse_day(value: str | None, what: str) -> date | None:
    if value is None or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise UserError(f"{what}: 日付は YYYY-MM-DD で入力してください（{value[:20]!r}）") from None


def day_bounds(since: date | None, until: date | None, time_zone: str) -> tuple[float | None, float | None]:
    """[start of `since`, end of `until`) as UNIX times, the days read in the campaign's time zone."""
    if since and until and since > until:
        raise UserError(f"開始日 {since} が終了日 {until} より後です")
    tz = ZoneInfo(time_zone)
    lo = datetime.combine(since, datetime.min.time(), tz).timestamp() if since else None
    hi = datetime.combine(until + timedelta(days=1), datetime.min.time(), tz).timestamp() if until else None
    return lo, hi


def reconciliation(s: Session, camp: Campaign, since: date | None = None, until: date | None = None,
                   time_zone: str = "Asia/Tokyo") -> list[WorkerLine]:
    """Per worker with a submission in the range (by submission time): codes, counts and pay, by platform ID."""
    lo, hi = day_bounds(since, until, time_zone)
    q = (select(Claim.id, Claim.status, Claim.completion_code, User.id, User.username, User.platform_id,
                User.display_name, PayEntry.amount_yen)
         .join(User, User.id == Claim.worker_id).outerjoin(PayEntry, PayEntry.claim_id == Claim.id)
         .where(Claim.campaign_id == camp.id, Claim.submitted_at.is_not(None)))
    if lo is not None:
        q = q.where(Claim.submitted_at >= lo)
    if hi is not None:
        q = q.where(Claim.submitted_at < hi)
    lines: dict[int, WorkerLine] = {}
    for _cid, status, code, uid, username, pid, disp, yen in s.execute(q.order_by(Claim.submitted_at, Claim.id)):
        line = lines.setdefault(uid, WorkerLine(pid or "", username, disp))
        line.submitted += 1
        if yen is not None:
            line.approved += 1
            line.amount_yen += int(yen)
        elif status == ClaimStatus.REJECTED:
            line.rejected += 1
        elif status == ClaimStatus.PENDING:
            line.pending += 1
        if code:
            line.codes.append(code)
    return sorted(lines.values(), key=lambda r: (r.platform_id or "\uffff", r.username))


def reconciliation_csv(lines: list[WorkerLine]) -> str:
    """With a UTF-8 BOM (Japanese Excel) and formula-looking cells escaped."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RECONCILE_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: spreadsheet_safe(v) for k, v in line.as_row().items()} for line in lines)
    return "\ufeff" + buf.getvalue()


def worker_code(s: Session, claim_id: int, worker_id: int) -> Claim | None:
    """The worker's own submitted claim (for the page that shows its code); None for anyone else's."""
    c = s.scalar(select(Claim).where(Claim.id == claim_id, Claim.worker_id == worker_id))
    return c if c is not None and c.submitted_at is not None else None
