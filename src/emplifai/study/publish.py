"""`emplifai dataset publish --out DIR`: the dataset as a Hugging Face ``datasets`` folder with its dataset card.

DIR holds the DatasetDict (``save_to_disk``; train/validation/test from the stored split, or one ``train`` split
when there is none), ``README.md`` (the card: YAML metadata, then a datasheet written from the store) and
``datasheet.json`` (the card's figures, machine-readable). Everything comes from the store; nothing goes over
the network (pushing to the Hub stays the user's step).

Worker ids are pseudonymised with a keyed hash (HMAC-SHA256): stable across publications, so a worker's items
stay linkable, but not reversible without the salt, which is never written into DIR. The salt is
``$EMPLIFAI_PUBLISH_SALT`` or a random one kept in ``$EMPLIFAI_HOME/publish-salt`` (created once, mode 0600).
Model authors of synthetic items (``synth:MODEL``) are not people and stay as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from emplifai import __version__, taxonomy
from emplifai.dataset import stats
from emplifai.dataset.export import export_store
from emplifai.errors import UserError
from emplifai.formatting import num, to_json
from emplifai.predict.table2 import stored_results
from emplifai.provenance import emplifai_home, json_digest
from emplifai.records import Record, Source
from emplifai.store.collect import Campaign, Claim, ClaimStatus, PayEntry
from emplifai.store.db import Store
from emplifai.store.models import ReviewEvent
from emplifai.store.predict import PredictionMetrics
from emplifai.store.repo import LIVE, iter_records, latest_manifest

SYNTH_AUTHOR = "synth:"
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def salt() -> bytes:
    if env := os.environ.get("EMPLIFAI_PUBLISH_SALT"):
        return env.encode()
    path = emplifai_home() / "publish-salt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def pseudonymiser(key: bytes) -> Callable[[str | None], str | None]:
    def pseudonym(author: str | None) -> str | None:
        if not author or author.startswith(SYNTH_AUTHOR):
            return author
        return "worker-" + hmac.new(key, author.encode(), hashlib.sha256).hexdigest()[:12]

    return pseudonym


def size_category(n: int) -> str:
    return next((label for limit, label in SIZES if n < limit), "n>1M")


def collection(store: Store) -> dict[str, Any]:
    """Campaigns (targets, pay, cap), workers, claims, rejection rate, pay ledger and review history counts."""
    with store.open_session() as s:
        camps = [{"name": c.name, "emotions": len(c.emotions), "round1_situations_per_emotion": c.round1_target,
                  "round2_dialogues_per_pair": c.round2_target, "pay_yen": {
                      "situation": c.pay_situation, "dialogue": c.pay_dialogue, "rating": c.pay_rating},
                  "rejection_cap": c.rejection_cap} for c in s.scalars(select(Campaign).order_by(Campaign.id))]
        claims = Counter({(k, st): n for k, st, n in s.execute(
            select(Claim.kind, Claim.status, func.count()).group_by(Claim.kind, Claim.status))})
        workers = s.scalar(select(func.count(func.distinct(Claim.worker_id))).where(
            Claim.status.in_([str(x) for x in (ClaimStatus.PENDING, ClaimStatus.APPROVED, ClaimStatus.REJECTED,
                                               ClaimStatus.FLAGGED, ClaimStatus.REMOVED)])))
        paid = s.execute(select(PayEntry.kind, func.count(), func.sum(PayEntry.amount_yen)).group_by(PayEntry.kind)
                         .order_by(PayEntry.kind))  # one order on every database: the card is reproducible
        pay = {k: {"entries": n, "yen": int(y or 0)} for k, n, y in paid}
        reviews = dict(s.execute(select(ReviewEvent.action, func.count()).group_by(ReviewEvent.action)).all())
    per_round = {}
    for kind in ("situation", "dialogue", "rating"):
        got = {st: n for (k, st), n in claims.items() if k == kind}
        reviewed = sum(got.get(str(x), 0) for x in (ClaimStatus.APPROVED, ClaimStatus.REJECTED, ClaimStatus.FLAGGED,
                                                   ClaimStatus.REMOVED))
        if got:
            per_round[kind] = {"claims": got, "reviewed": reviewed,
                               "rejection_rate": round(got.get("rejected", 0) / reviewed, 4) if reviewed else None}
    return {"campaigns": camps, "workers": workers or 0, "claims": per_round, "pay": pay,
            "review_events": dict(sorted(reviews.items()))}


def synthetic(records: list[Record]) -> dict[str, Any]:
    syn = [r for r in records if r.source == str(Source.SYNTHETIC)]
    models = Counter(str((r.meta.get("synth") or {}).get("model", "unknown")) for r in syn)
    prompts = Counter(str((r.meta.get("synth") or {}).get("prompt_version", "unknown")) for r in syn)
    return {"dialogues": len(syn), "share": round(len(syn) / len(records), 4) if records else None,
            "status": dict(Counter(r.status for r in syn)), "models": dict(models), "prompt_versions": dict(prompts),
            "runs": len({(r.meta.get("synth") or {}).get("run") for r in syn})}


def table2(store: Store) -> list[dict[str, Any]]:
    """Every stored Table-2 row with its signature (newest computation per run and split)."""
    with store.open_session() as s:
        keys = s.execute(select(PredictionMetrics.split, PredictionMetrics.run_id)
                         .order_by(PredictionMetrics.id)).all()
    out = []
    for split in dict.fromkeys(sp for sp, _ in keys):
        for r in stored_results(store, list(dict.fromkeys(rid for sp, rid in keys if sp == split)), split):
            e = r["entry"]
            out.append({"split": split, **{k: e.get(k) for k in (
                "model", "run_id", "n", "accuracy", "macro_f1", "top3_accuracy", "bertscore_f1", "fasttext_cosine",
                "unparsed", "failed")}, "signature": e["signature"], "signature_digest": json_digest(e["signature"])})
    return out


def publish(store: Store, out: Path, *, license: str = "cc-by-nc-sa-4.0", name: str = "EmplifAI",
            overwrite: bool = False) -> dict[str, Any]:
    """Write DIR; returns the datasheet's figures. DIR appears whole or not at all."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    pseudonym = pseudonymiser(salt())
    with store.open_session() as s:
        records = list(iter_records(s, LIVE))
        manifest = latest_manifest(s)
    if not records:
        raise UserError("the store has no dialogues to publish; import a dataset first")
    tmp = out.with_name(f".{out.name}.publishing")
    shutil.rmtree(tmp, ignore_errors=True)
    splits = export_store(store, tmp, "hf", statuses=LIVE, single_split="train",
                          rewrite=lambda r: replace(r, author=pseudonym(r.author)))
    sheet = {
        "name": name, "license": license, "emplifai": __version__, "splits": splits,
        "split_manifest": {"id": manifest.id, "seed": manifest.seed, "content_hash": manifest.content_hash}
        if manifest else None,
        "statistics": stats.compute(records), "collection": collection(store), "synthetic": synthetic(records),
        "table2": table2(store), "authors": len({r.author for r in records if r.author}),
    }
    (tmp / "datasheet.json").write_text(to_json(sheet), encoding="utf-8")
    (tmp / "README.md").write_text(card(sheet), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return sheet


def card(sheet: dict[str, Any]) -> str:
    """The dataset card: YAML metadata for the Hub, then the datasheet."""
    st, col, syn = sheet["statistics"], sheet["collection"], sheet["synthetic"]
    n = st["dialogues"]
    lines = ["---", f"license: {sheet['license']}", "language:", "- ja", "task_categories:", "- text-generation",
             "- text-classification", "tags:", "- empathetic-dialogue", "- medical", "- emotion", "size_categories:",
             f"- {size_category(n)}", f"pretty_name: {sheet['name']}", "---", "",
             f"# {sheet['name']}", "",
             "Japanese two-turn patient → supporter dialogues about living with chronic conditions, each grounded "
             "in a situation labelled with one of the 28 GoEmotions emotions (Japanese names of the EmplifAI "
             "paper's Table 1). Load it with `datasets.load_from_disk(DIR)`.", "",
             "## Splits", "", "| split | dialogues |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sheet["splits"].items()]
    m = sheet["split_manifest"]
    lines += ["", f"Split manifest {m['id']} (seed {m['seed']}, content `{m['content_hash'][:16]}`): grouped by "
              "situation, stratified by emotion." if m else "No split was made: every dialogue is in `train`.", ""]
    pair, lengths, dup = st["dialogues_per_pair"], st["lengths_chars"], st["duplicates"]
    lines += ["## Statistics (paper §3.5)", "", f"- situations: {st['situations']}", f"- dialogues: {n}",
              f"- dialogues per emotion–situation pair: mean {pair['mean']}, median {pair['median']}, "
              f"min {pair['min']}, max {pair['max']}"]
    lines += [f"- {k} length (characters): mean {v['mean']}, median {v['median']}, min {v['min']}, max {v['max']}"
              for k, v in lengths.items()]
    bal = st["balance"]
    lines += [f"- balance (normalised entropy over 28 emotions): dialogues "
              f"{bal['dialogues_normalised_entropy']}, situations {bal['situations_normalised_entropy']}",
              f"- duplicates: exact {dup['exact']}, near {dup['near']} (Jaccard ≥ {dup['near_threshold']})",
              f"- sources: {', '.join(f'{k} {v}' for k, v in st['source'].items())}; statuses: "
              f"{', '.join(f'{k} {v}' for k, v in st['status'].items())}", "",
              "## Emotions (Table 1)", "", "| emotion | 感情 | group | definition | situations | dialogues |",
              "|---|---|---|---|---|---|"]
    for lab in taxonomy.LABELS:
        e = st["emotions"][lab.en]
        lines.append(f"| {lab.en} | {lab.ja} | {lab.group} | {lab.definition_ja} | {e['situations']} | "
                     f"{e['dialogues']} |")
    lines += ["", "## Collection protocol", ""]
    if col["campaigns"]:
        lines += ["| campaign | emotions | round 1: situations per emotion | round 2: dialogues per pair | pay ¥ "
                  "(situation / dialogue / rating) | rejection cap |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['name']} | {c['emotions']} | {c['round1_situations_per_emotion']} | "
                  f"{c['round2_dialogues_per_pair']} | {c['pay_yen']['situation']} / {c['pay_yen']['dialogue']} / "
                  f"{c['pay_yen']['rating']} | {c['rejection_cap']:.0%} |" for c in col["campaigns"]]
        lines.append("")
        for kind, c in col["claims"].items():
            lines.append(f"- {kind} submissions: {', '.join(f'{k} {v}' for k, v in sorted(c['claims'].items()))}; "
                         f"rejection rate {num(c['rejection_rate'], 3)} of {c['reviewed']} reviewed")
        lines += [f"- workers: {col['workers']} (pseudonymised in `author`)",
                  "- paid: " + (", ".join(f"{k}: {v['entries']} entries, ¥{v['yen']}" for k, v in col["pay"].items())
                                or "nothing recorded")]
    else:
        lines.append("No crowdsourcing campaign is recorded in this store (the dialogues were imported).")
    lines += ["- review history: " + (", ".join(f"{k} {v}" for k, v in col["review_events"].items()) or "empty"), "",
              "## Synthetic items", ""]
    if syn["dialogues"]:
        lines += [f"{syn['dialogues']} dialogues ({syn['share']:.1%}) are synthetic (SynthEmpathy-style), from "
                  f"{syn['runs']} run(s); models: {', '.join(f'{k} ({v})' for k, v in syn['models'].items())}; "
                  f"prompt versions: {', '.join(syn['prompt_versions'])}; review status: "
                  f"{', '.join(f'{k} {v}' for k, v in syn['status'].items())}. Each one's provenance (model "
                  "signature, prompt, seed, stage outputs) is in its `meta` column."]
    else:
        lines.append("None: every dialogue was written by people.")
    lines += ["", "## Taxonomy validation (Table 2)", ""]
    if sheet["table2"]:
        lines += ["| model | split | n | accuracy | macro-F1 | top-3 | BERTScore F1 | word-vector cosine | signature |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {t['model']} | {t['split']} | {t['n']} | {num(t['accuracy'], 3)} | {num(t['macro_f1'], 3)} | "
                  f"{num(t['top3_accuracy'], 3)} | {num(t['bertscore_f1'], 3)} | {num(t['fasttext_cosine'], 3)} | "
                  f"`{t['signature_digest']}` |" for t in sheet["table2"]]
        lines += ["", "Full signatures (model, LLM signature, prompt version, metrics) are in `datasheet.json`."]
    else:
        lines.append("Not computed yet (`emplifai validate-taxonomy`).")
    lines += ["", "## Privacy", "", "Worker ids are replaced by a keyed hash (HMAC-SHA256, salt not published): a "
              "worker's items stay linkable, the person is not named.", "",
              f"Written by emplifai {sheet['emplifai']}; the figures are also in `datasheet.json`.", ""]
    return "\n".join(lines)
