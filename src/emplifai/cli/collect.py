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


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    dev: Annotated[bool, typer.Option("--dev", help="Development mode: allows the built-in secret key.")] = False,
    db: DbOpt = None,
) -> None:
    """Run the crowdsourcing web app (Japanese UI). Needs EMPLIFAI_SECRET_KEY unless --dev."""
    import uvicorn
    from pydantic import ValidationError

    from emplifai.collect import Settings, create_app
    from emplifai.collect.settings import check_dev_host

    if dev:
        check_dev_host(host)
    try:
        settings = Settings.from_env(db=db, **({"environment": "development"} if dev else {}))
    except ValidationError as exc:
        raise UserError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    console.print(f"emplifai collect on http://{host}:{port}/ ({settings.environment})")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
    root.add_typer(app, name="collect")
