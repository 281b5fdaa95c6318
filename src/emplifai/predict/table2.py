"""Table 2 files: ``table2.md``, ``table2.json``, per-emotion results and a confusion heatmap per model.

Reads stored predictions only (through :mod:`emplifai.predict.runs`) and the metrics of
:mod:`emplifai.metrics`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from emplifai import taxonomy
from emplifai.formatting import finite_or_none, num, to_json
from emplifai.metrics import UNPARSED_COL, Scored, Scorers, answer_text, evaluate
from emplifai.store.db import Store
from emplifai.store.predict import PredictionMetrics

TABLE_KEYS = ("fasttext_cosine", "bertscore_precision", "bertscore_recall", "bertscore_f1", "accuracy", "macro_f1",
              "top3_accuracy", "top3_n", "n", "unparsed", "failed")


def slug(model: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")
    return s[-80:] or "model"


def to_scored(rows: Sequence[Any], lang: str) -> list[Scored]:
    """Prediction rows -> what the metrics compare (label name in ``lang``, the raw answer, or None)."""
    out = []
    for r in rows:
        if r.predicted:
            text = taxonomy.BY_EN[r.predicted].ja if lang == "ja" else r.predicted
        else:
            text = answer_text(r.raw_output) if r.status != "failed" else None
        out.append(Scored(r.dialogue_id, r.gold, r.predicted, text, tuple(r.top3) if r.top3 else None, r.status))
    return out


def model_entry(model: str, run_id: str, rows: Sequence[Any], scorers: Scorers) -> dict[str, Any]:
    metrics = evaluate(to_scored(rows, scorers.lang), scorers)
    run_sig = rows[0].signature if rows else {}
    entry = {k: metrics[k] for k in TABLE_KEYS}
    entry.update(
        model=model, run_id=run_id, failed=metrics["failed"], cosine_missing=metrics["cosine_missing"],
        signature={"predictions": run_sig, "metrics": metrics["signature"]},
    )
    return {"entry": entry, "metrics": metrics}


def save_results(store: Store, results: Sequence[dict[str, Any]], split: str) -> None:
    """Store each model's Table-2 row and metrics, signed; a recomputed run replaces its earlier row."""
    with store.transaction() as s:
        for r in results:
            entry = finite_or_none(r["entry"])
            s.execute(delete(PredictionMetrics).where(PredictionMetrics.run_id == entry["run_id"],
                                                       PredictionMetrics.split == split))
            metrics = finite_or_none({k: v for k, v in r["metrics"].items() if k != "signature"})
            s.add(PredictionMetrics(run_id=entry["run_id"], model=entry["model"], split=split, entry=entry,
                                    metrics=metrics, signature=entry["signature"]))


def stored_results(store: Store, run_ids: Sequence[str], split: str) -> list[dict[str, Any]]:
    """Table 2 as stored, in the order of ``run_ids`` ({"entry", "metrics"} per model, as model_entry gives)."""
    with store.open_session() as s:
        rows = {m.run_id: m for m in s.scalars(select(PredictionMetrics).where(
            PredictionMetrics.run_id.in_(list(run_ids)), PredictionMetrics.split == split))}
    return [{"entry": rows[r].entry, "metrics": rows[r].metrics} for r in run_ids if r in rows]


def markdown(results: Sequence[dict[str, Any]], split: str) -> str:
    """Table 2 and each model's per-group results as Markdown (model_entry() or stored_results() outputs)."""
    entries = [r["entry"] for r in results]
    head = ["Model", "Word-vector cosine", "BERTScore P", "BERTScore R", "BERTScore F1", "Accuracy", "Macro-F1",
            "Top-3", "Top-3 n", "n", "Unparsed", "Failed"]
    lines = [f"# Table 2: reverse-engineering evaluation ({split} split)", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for e in entries:
        lines.append("| " + " | ".join([e["model"], *(num(e[k], 3) for k in TABLE_KEYS)]) + " |")
    msig = entries[0]["signature"]["metrics"] if entries else {}
    vec = (msig.get("word_vectors") or {}).get("vectors", "–")
    lines += ["", f"Word-vector cosine is the paper's \"FastText\" column (here: {vec}). "
              f"BERTScore encoder: `{msig.get('bertscore_hash')}`.", ""]
    for e, d in zip(entries, results, strict=True):
        m = d["metrics"]
        lines += [f"## {e['model']}", "", f"run `{e['run_id']}` · failed {m['failed']} · distinct pairs "
                  f"{m['distinct_pairs']} · cosine fallbacks: "
                  + ", ".join(f"{k} {v}" for k, v in m["cosine_fallbacks"].items()), "",
                  "| Group | n | Accuracy | Group accuracy | BERTScore F1 | Cosine |", "|---|---|---|---|---|---|"]
        for grp, s in m["per_group"].items():
            lines.append(f"| {grp} | {s['n']} | {num(s['accuracy'], 3)} | {num(s['group_accuracy'], 3)} | "
                         f"{num(s['bertscore_f1'], 3)} | {num(s['fasttext_cosine'], 3)} |")
        lines.append("")
        lines.append(f"Per emotion: `per_emotion_{slug(e['model'])}.csv`; confusion matrix: "
                     f"`confusion_{slug(e['model'])}.png`.")
        lines.append("")
    return "\n".join(lines)


def write_per_emotion(path: Path, metrics: dict[str, Any]) -> None:
    cols = ["emotion", "ja", "group", "n", "accuracy", "precision", "f1", "top3_accuracy", "predicted_count",
            "bertscore_f1", "fasttext_cosine"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for en, s in metrics["per_emotion"].items():
            w.writerow([en, s["ja"], str(taxonomy.BY_EN[en].group), s["n"],
                        *(s[k] if s[k] is not None else "" for k in cols[4:])])


def plot_confusion(path: Path, metrics: dict[str, Any], title: str) -> None:
    """Heatmap with Japanese labels (matplotlib-fontja's IPAexGothic, so no tofu boxes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib_fontja  # noqa: F401  - sets a Japanese-capable font family on import
    import numpy as np

    conf = metrics["confusion"]
    m = np.asarray(conf["matrix"], dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    ja = {lab.en: lab.ja for lab in taxonomy.LABELS}
    ylabels = [ja[r] for r in conf["rows"]]
    xlabels = [ja.get(c, "解析不能" if c == UNPARSED_COL else c) for c in conf["cols"]]
    fig, ax = plt.subplots(figsize=(12, 10.5), dpi=110)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=90, fontsize=9)
    ax.set_yticks(range(len(ylabels)), ylabels, fontsize=9)
    ax.set_xlabel("予測された感情")
    ax.set_ylabel("正解の感情")
    ax.set_title(title, fontsize=11)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.04, label="行ごとの割合")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(out: Path, results: Sequence[dict[str, Any]], split: str) -> dict[str, Path]:
    """``results``: model_entry() outputs in table order. Returns the written files by kind."""
    out.mkdir(parents=True, exist_ok=True)
    entries = [r["entry"] for r in results]
    files: dict[str, Path] = {}
    js = out / "table2.json"
    js.write_text(to_json({"split": split, "models": entries}), encoding="utf-8")
    files["json"] = js
    for r in results:
        s = slug(r["entry"]["model"])
        detail = {k: v for k, v in r["metrics"].items() if k != "signature"}
        (out / f"metrics_{s}.json").write_text(to_json(detail), encoding="utf-8")
        write_per_emotion(out / f"per_emotion_{s}.csv", r["metrics"])
        plot_confusion(out / f"confusion_{s}.png", r["metrics"], f"{r['entry']['model']}（n={r['entry']['n']}）")
        files[f"confusion:{s}"] = out / f"confusion_{s}.png"
    md = out / "table2.md"
    md.write_text(markdown(results, split), encoding="utf-8")
    files["md"] = md
    return files
