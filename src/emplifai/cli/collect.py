"""`emplifai serve` (the crowdsourcing web app) and `emplifai collect …` (accounts, campaigns, rating tasks, pay)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emplifai.cli.common import DbOpt, console
from emplifai.errors import UserError

app = typer.Typer(help="Crowdsourcing: accounts, campaigns, rating tasks, pay ledger.", no_args_is_help=True)


def _password(given: str | None) -> str:
    if given:
        return given
    if env := os.environ.get("EMPLIFAI_PASSWORD"):
        return env
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise UserError("the two passwords differ")
    return first


@app.command("create-user")
def create_user(
    username: Annotated[str, typer.Argument(help="Sign-in name.")],
    role: Annotated[str, typer.Option(help="worker, reviewer, lead or admin.")] = "worker",
    display_name: Annotated[str, typer.Option(help="Name shown in the app.")] = "",
    password: Annotated[str | None, typer.Option(help="Prompted (or EMPLIFAI_PASSWORD) when omitted.")] = None,
    db: DbOpt = None,
) -> None:
    """Create an account (password hashed with argon2id)."""
    from emplifai.collect.accounts import create_user as create
    from emplifai.store.db import open_store

    pw = _password(password)
    with open_store(db).transaction() as s:
        user = create(s, username, pw, role, display_name)
        console.print(f"created {user.role} {user.username!r} (id {user.id})")


@app.command("set-password")
def set_password(username: str, password: Annotated[str | None, typer.Option()] = None, db: DbOpt = None) -> None:
    """Change a password; the user is signed out everywhere."""
    from emplifai.collect.accounts import set_password as setpw
    from emplifai.store.db import open_store

    pw = _password(password)
    with open_store(db).transaction() as s:
        setpw(s, username, pw)
    console.print(f"password of {username!r} changed")


@app.command("create-campaign")
def create_campaign(
    name: Annotated[str, typer.Argument(help="Campaign name (letters, digits, '_', '-').")],
    emotion: Annotated[list[str] | None, typer.Option(help="Emotion label (repeat); default all 28.")] = None,
    round1_target: Annotated[int, typer.Option(help="Situations per emotion (round 1).")] = 10,
    round2_target: Annotated[int, typer.Option(help="Dialogues per emotion–situation pair (round 2).")] = 15,
    pay_situation: Annotated[int, typer.Option(help="Yen per approved situation.")] = 10,
    pay_dialogue: Annotated[int, typer.Option(help="Yen per approved dialogue.")] = 50,
    pay_rating: Annotated[int, typer.Option(help="Yen per approved rating group.")] = 500,
    raters: Annotated[int, typer.Option(help="Raters per rating group.")] = 3,
    rejection_cap: Annotated[float, typer.Option(help="Largest share of submissions that may be rejected.")] = 0.30,
    lease_minutes: Annotated[float, typer.Option(help="How long a claimed task stays reserved.")] = 30,
    seed_round2: Annotated[bool, typer.Option(help="Use approved situations already in the store as round-2 "
                                                   "prompts.")] = False,
    db: DbOpt = None,
) -> None:
    """Create a campaign: one round-1 bucket per emotion; approved situations become round-2 prompts."""
    from emplifai.collect.campaigns import create_campaign as create
    from emplifai.collect.campaigns import seed_round2 as seed
    from emplifai.store.db import open_store

    with open_store(db).transaction() as s:
        camp = create(s, name, emotion, round1_target=round1_target, round2_target=round2_target,
                      rating_raters=raters, pay_situation=pay_situation, pay_dialogue=pay_dialogue,
                      pay_rating=pay_rating, rejection_cap=rejection_cap, lease_seconds=int(lease_minutes * 60))
        n = seed(s, camp) if seed_round2 else 0
        console.print(f"created campaign {camp.name!r} (id {camp.id}): {len(camp.emotions)} emotions"
                      + (f", {n} round-2 prompts from the store" if seed_round2 else ""))


@app.command("seed-round2")
def seed_round2(campaign: str, db: DbOpt = None) -> None:
    """Add approved situations in the store (e.g. imported ones) as round-2 prompts of a campaign."""
    from emplifai.collect.campaigns import get_campaign
    from emplifai.collect.campaigns import seed_round2 as seed
    from emplifai.store.db import open_store

    with open_store(db).transaction() as s:
        n = seed(s, get_campaign(s, campaign))
    console.print(f"{n} round-2 prompts added")


@app.command("examples")
def examples(
    campaign: Annotated[str, typer.Argument(help="Campaign name or id.")],
    file: Annotated[Path | None, typer.Argument(help="Examples file (.toml, .json, .yaml); omit to keep them.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Validate the file only; store nothing.")] = False,
    template: Annotated[Path | None, typer.Option(help="Write the campaign's current examples (defaults from the "
                                                       "bundled corpus included) to this TOML file, to edit.")] = None,
    db: DbOpt = None,
) -> None:
    """The worked examples workers see per emotion: replace them from a file, or write a template to edit."""
    from emplifai.collect.campaigns import get_campaign
    from emplifai.collect.examples import examples_for, read_examples, set_examples, template_toml
    from emplifai.store.db import open_store

    items = read_examples(file) if file is not None else None
    if items is not None and check:
        console.print(f"{file}: {len(items)} valid examples (nothing stored)")
        return
    with open_store(db).transaction() as s:
        camp = get_campaign(s, campaign)
        if items is not None:
            set_examples(s, camp, items)
            console.print(f"campaign {camp.name!r}: {len(items)} examples from {file}; other emotions use the "
                          "bundled defaults")
        if template is not None:
            template.write_text(template_toml(examples_for(s, camp.id), camp.emotions), encoding="utf-8")
            console.print(f"wrote {template}")


@app.command("rating-tasks")
def rating_tasks(
    campaign: str,
    sample: Annotated[str, typer.Option(help="Evaluation sample name.")] = "default",
    source: Annotated[str, typer.Option(help="Generation source (model spec, or 'human').")] = "human",
    db: DbOpt = None,
) -> None:
    """Hand out a sample's generations for human rating: groups of 10, each rated by the campaign's raters."""
    from emplifai.collect.campaigns import get_campaign
    from emplifai.collect.rating import create_rating_tasks
    from emplifai.store.db import open_store

    with open_store(db).transaction() as s:
        n = create_rating_tasks(s, get_campaign(s, campaign), sample, source)
    console.print(f"{n} rating groups added")


@app.command()
def progress(campaign: str, db: DbOpt = None) -> None:
    """Progress per emotion against the targets (the web dashboard has the per-pair view)."""
    from emplifai.collect.campaigns import buckets, by_emotion, get_campaign
    from emplifai.records import Kind
    from emplifai.store.db import open_store

    with open_store(db).open_session() as s:
        camp = get_campaign(s, campaign)
        rows = buckets(s, camp)
    t = Table("emotion", "r1 approved", "r1 pending", "r1 target", "pairs", "r2 approved", "r2 pending", "r2 target")
    for a, b in zip(by_emotion(camp, rows, Kind.SITUATION), by_emotion(camp, rows, Kind.DIALOGUE), strict=True):
        t.add_row(f"{a.emotion} ({a.ja})", str(a.approved), str(a.pending), str(a.target), str(b.pairs),
                  str(b.approved), str(b.pending), str(b.target))
    console.print(t)


@app.command()
def ledger(
    campaign: str,
    out: Annotated[Path | None, typer.Option(help="Write the CSV here instead of stdout.")] = None,
    db: DbOpt = None,
) -> None:
    """The pay ledger (approved tasks × rate per worker) as CSV for payout."""
    from emplifai.collect.campaigns import get_campaign, ledger_csv
    from emplifai.collect.campaigns import ledger as rows
    from emplifai.store.db import open_store

    with open_store(db).open_session() as s:
        text = ledger_csv(rows(s, get_campaign(s, campaign)))
    if out:
        out.write_text(text, encoding="utf-8-sig")  # with a BOM, Japanese Excel opens it as UTF-8
        console.print(f"wrote {out}")
    else:
        print(text, end="")


@app.command("import-workers")
def import_workers(
    csv_file: Annotated[Path, typer.Argument(help="CSV with a platform_id column (and display_name, username).")],
    base_url: Annotated[str | None, typer.Option(help="Public address of the app, for invite links "
                                                     "(default EMPLIFAI_PUBLIC_URL).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the invite links here (CSV) instead of stdout.")] = None,
    days: Annotated[float, typer.Option(help="Days an invite link stays valid.")] = 7.0,
    db: DbOpt = None,
) -> None:
    """Create worker accounts from a platform's CSV (all rows or none) and print one-time invite links."""
    from emplifai.collect.onboarding import decode_csv, issue_invites, parse_workers_csv
    from emplifai.collect.onboarding import import_workers as create
    from emplifai.store.db import open_store

    base = _base_url(base_url)
    text, _ = decode_csv(_read(csv_file), str(csv_file))
    rows = parse_workers_csv(text, str(csv_file))
    with open_store(db).transaction() as s:
        issued = issue_invites(s, create(s, rows, str(csv_file)), "cli", days=days)
    _write_invites(issued, base, out)
    console.print(f"imported {len(issued)} workers from {csv_file}", style="green")


@app.command()
def invite(
    usernames: Annotated[list[str], typer.Argument(help="Accounts to (re)invite; older unused links stop working.")],
    base_url: Annotated[str | None, typer.Option(help="Public address of the app (default EMPLIFAI_PUBLIC_URL).")
                        ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the invite links here (CSV).")] = None,
    days: Annotated[float, typer.Option(help="Days an invite link stays valid.")] = 7.0,
    db: DbOpt = None,
) -> None:
    """New one-time invite links (the person sets their own password with it)."""
    from sqlalchemy import select

    from emplifai.collect.onboarding import issue_invites
    from emplifai.store.collect import User
    from emplifai.store.db import open_store

    base = _base_url(base_url)
    with open_store(db).transaction() as s:
        users = list(s.scalars(select(User).where(User.username.in_(usernames))))
        missing = sorted(set(usernames) - {u.username for u in users})
        if missing:
            raise UserError(f"no user {', '.join(map(repr, missing))}")
        issued = issue_invites(s, users, "cli", days=days)
    _write_invites(issued, base, out)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from None


def _base_url(given: str | None) -> str:
    base = given or os.environ.get("EMPLIFAI_PUBLIC_URL")
    if not base or not base.startswith(("https://", "http://")):
        raise UserError("give --base-url https://… (or EMPLIFAI_PUBLIC_URL): the address workers open")
    return base


def _write_invites(issued: list, base: str, out: Path | None) -> None:  # type: ignore[type-arg]
    import csv
    import io

    from emplifai.collect.deps import format_timestamp
    from emplifai.collect.onboarding import invite_url
    from emplifai.dataset.formats import spreadsheet_safe

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["platform_id", "username", "display_name", "invite_url", "expires"])
    tz = os.environ.get("EMPLIFAI_TIME_ZONE", "Asia/Tokyo")
    for i in issued:
        w.writerow([spreadsheet_safe(v) for v in (i.platform_id or "", i.username, i.display_name,
                                                   invite_url(base, i.token), format_timestamp(i.expires_at, tz))])
    if out:
        out.write_text(buf.getvalue(), encoding="utf-8-sig")
        console.print(f"wrote {len(issued)} invite links to {out} (they work once; keep the file private)")
    else:
        print(buf.getvalue(), end="")


def _set_state(campaign: str, state: str, db: str | None) -> None:
    from emplifai.collect.campaigns import STATES, set_state
    from emplifai.store.db import open_store

    with open_store(db).transaction() as s:
        camp = set_state(s, campaign, state)
    console.print(f"campaign {camp.name!r}: {state} ({STATES[state]})")


@app.command()
def pause(campaign: str, db: DbOpt = None) -> None:
    """No new claims; tasks already claimed can still be submitted."""
    _set_state(campaign, "paused", db)


@app.command()
def resume(campaign: str, db: DbOpt = None) -> None:
    """Open a paused (or closed) campaign again."""
    _set_state(campaign, "open", db)


@app.command()
def close(campaign: str, db: DbOpt = None) -> None:
    """No claims and no submissions any more."""
    _set_state(campaign, "closed", db)


@app.command()
def quota(
    campaign: str,
    tasks: Annotated[int, typer.Argument(help="Most tasks one worker may take (leased or submitted); 0 lifts it.")],
    db: DbOpt = None,
) -> None:
    """Set the per-worker task quota of a campaign."""
    from emplifai.collect.campaigns import set_quota
    from emplifai.store.db import open_store

    with open_store(db).transaction() as s:
        camp = set_quota(s, campaign, tasks or None)
    console.print(f"campaign {camp.name!r}: " + (f"at most {tasks} tasks per worker" if tasks else "no quota"))


@app.command()
def deactivate(username: str, db: DbOpt = None) -> None:
    """Disable an account: signed out everywhere, invites dead, open leases back in the pool."""
    from emplifai.collect.onboarding import offboard
    from emplifai.store.db import open_store

    with open_store(db).transaction() as s:
        user, released = offboard(s, username)
    console.print(f"deactivated {user.username!r}; {released} open task(s) released")


@app.command()
def reconcile(
    campaign: str,
    since: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD, campaign time zone).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day, inclusive.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the CSV here instead of stdout.")] = None,
    db: DbOpt = None,
) -> None:
    """Per platform ID: completion codes, approved/rejected/pending counts and pay, for the platform's review."""
    from emplifai.collect.campaigns import get_campaign
    from emplifai.collect.reconcile import parse_day, reconciliation, reconciliation_csv
    from emplifai.store.db import open_store

    tz = os.environ.get("EMPLIFAI_TIME_ZONE", "Asia/Tokyo")
    lo, hi = parse_day(since, "--since"), parse_day(until, "--until")
    with open_store(db).open_session() as s:
        text = reconciliation_csv(reconciliation(s, get_campaign(s, campaign), lo, hi, tz))
    if out:
        out.write_text(text, encoding="utf-8")  # the text already starts with the BOM
        console.print(f"wrote {out}")
    else:
        print(text.removeprefix("\ufeff"), end="")


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    dev: Annotated[bool, typer.Option("--dev", help="Development mode: allows the built-in secret key.")] = False,
    workers: Annotated[int, typer.Option(help="Server processes (more than 1 needs PostgreSQL).")] = 1,
    db: DbOpt = None,
) -> None:
    """Run the crowdsourcing web app (Japanese UI). Needs EMPLIFAI_SECRET_KEY unless --dev."""
    from pydantic import ValidationError

    from emplifai.collect import Settings
    from emplifai.collect.server import check_workers
    from emplifai.collect.server import serve as run_server
    from emplifai.collect.settings import check_dev_host

    if dev:
        check_dev_host(host)
    try:
        settings = Settings.from_env(db=db, **({"environment": "development"} if dev else {}))
    except ValidationError as exc:
        raise UserError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    check_workers(settings, workers)
    console.print(f"emplifai collect on http://{host}:{port}/ ({settings.environment}, "
                  f"{workers} process{'es' if workers > 1 else ''})")
    run_server(settings, host, port, workers)


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
    root.add_typer(app, name="collect")
