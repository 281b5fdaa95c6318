"""The study report: reads stored results only and renders Markdown plus one self-contained HTML file.

Images are embedded as data URIs so the HTML can be mailed or archived as a single file.
"""

from __future__ import annotations

import base64
import platform
import re
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emplifai import __version__, taxonomy
from emplifai.dataset import stats
from emplifai.errors import UserError
from emplifai.evaluate import panel, tables
from emplifai.evaluate.rubrics import EPITOME, METRICS
from emplifai.evaluate.rubrics import label as metric_label
from emplifai.formatting import num, to_json
from emplifai.predict.table2 import TABLE_KEYS, plot_confusion, slug, stored_results
from emplifai.predict.table2 import markdown as table2_markdown
from emplifai.store.repo import iter_records
from emplifai.study import spend

if TYPE_CHECKING:
    from emplifai.study.runner import Study

LIBRARIES = ("torch", "transformers", "llama-cpp-python", "bert-score", "scikit-learn", "scipy", "sqlalchemy")


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"emplifai": __version__, "python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = None
    return out


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _per_emotion_chart(results: list[dict[str, Any]], out: Path) -> Path | None:
    """Per-emotion accuracy of every model side by side, Japanese labels."""
    series = {r["entry"]["model"]: [r["metrics"]["per_emotion"][lab.en]["accuracy"] or 0.0 for lab in taxonomy.LABELS]
              for r in results if r["metrics"].get("per_emotion")}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib_fontja  # noqa: F401  (Japanese font: no tofu boxes)
    import numpy as np

    x = np.arange(len(taxonomy.LABELS))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(12, 4))
    for i, (model, acc) in enumerate(series.items()):
        ax.bar(x + i * width, acc, width, label=model[:40])
    ax.set_xticks(x + 0.4 - width / 2, [lab.ja for lab in taxonomy.LABELS], rotation=60, fontsize=8)
    ax.set_ylabel("正解率 accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("感情ごとの正解率（逆推定）")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _evaluation(study: Study) -> dict[str, Any]:
    """Tables 4 and 5 and their plots, when the judge stage has run: Table 4 per rubric set (the paper's 7,
    EPITOME's 3), for the first judge and, with a panel, for the panel (mean of judges, agreement)."""

    folder = study.out / "eval"
    panel_specs, sample = study.cfg.judge.panel, study.cfg.sample.name
    judge = panel_specs[0]
    keys = study.cfg.judge.metric_keys
    sets = {name: tuple(m for m in ms if m in keys) for name, ms in (("table4", METRICS), ("table4_epitome", EPITOME))}
    result: dict[str, Any] = {"table4": None, "table4_epitome": None, "panel": {}, "table5": None, "bias": None,
                              "plots": [], "why_no_table5": None, "judges": panel_specs}
    for name, metrics in sets.items():
        if not metrics:
            continue
        try:
            result[name] = tables.table4(study.store, judge, sample, metrics=metrics)
        except UserError as exc:
            result["why_no_table4"] = result["why_no_table5"] = str(exc)
            return result
        tables.write(folder, name, result[name], tables.md4(result[name]))
        if len(panel_specs) > 1:
            result["panel"][name] = panel.panel_table4(study.store, panel_specs, sample, metrics=metrics)
            tables.write(folder, f"{name}_panel", result["panel"][name], panel.md_panel(result["panel"][name]))
    if result["table4"] is None:  # EPITOME only: bias, Table 5 and the plots are defined on the 7 metrics
        if result["table4_epitome"] is not None:
            result["why_no_table5"] = "Table 5 compares the paper's 7 metrics; this run judged EPITOME's 3 only"
        return result
    result["bias"] = tables.bias(study.store, judge, sample)
    tables.write(folder, "bias", result["bias"], tables.md_bias(result["bias"]))
    rated = study.cfg.agree.source if study.cfg.agree.ratings else None
    if rated:
        result["table5"] = tables.table5(study.store, judge, rated, sample)
        tables.write(folder, "table5", result["table5"], tables.md5(result["table5"]))
    else:
        result["why_no_table5"] = ("no human ratings were given: export sheets with `emplifai ratings export`, "
                                   "have them filled, and list them under [agree] ratings")
    result["plots"] = tables.plots(study.store, judge, folder, sample, rated)
    return result


def _markdown(study: Study, c: dict[str, Any]) -> str:
    """The same report as Markdown, rendered from the stored results."""
    d = c["dataset"]
    lines = ["# emplifai study report", "", "## Dataset", "",
             f"{d['situations']} situations, {d['dialogues']} dialogues; dialogues per emotion–situation pair: "
             f"mean {d['dialogues_per_pair']['mean']} (min {d['dialogues_per_pair']['min']}, "
             f"max {d['dialogues_per_pair']['max']}); balance (normalised entropy) "
             f"{d['balance']['dialogues_normalised_entropy']}; exact duplicates {d['duplicates']['exact']}, "
             f"near duplicates {d['duplicates']['near']}.", "",
             "| emotion | 感情 | group | situations | dialogues |", "|---|---|---|---|---|"]
    lines += [f"| {en} | {e['ja']} | {e['group']} | {e['situations']} | {e['dialogues']} |"
              for en, e in d["emotions"].items()]
    ev = c["eval"]
    parts = [table2_markdown(c["table2_results"], c["table2"]["split"]) if c["table2_results"] else None,
             tables.md4(ev["table4"]) if ev.get("table4") else None,
             tables.md4(ev["table4_epitome"]) if ev.get("table4_epitome") else None,
             *[panel.md_panel(t) for t in ev.get("panel", {}).values()],
             tables.md5(ev["table5"]) if ev.get("table5") else None,
             tables.md_bias(ev["bias"]) if ev.get("bias") else None]
    for part in filter(None, parts):
        lines += ["", re.sub(r"^(#+) ", r"#\1 ", part, flags=re.MULTILINE)]
    if c["eval"].get("why_no_table5"):
        lines += ["", f"Table 5: {c['eval']['why_no_table5']}."]
    lines += ["", re.sub(r"^(#+) ", r"#\1 ", spend.markdown(study.state.data), flags=re.MULTILINE)]
    lines += ["", "## Provenance", "", "```json", c["provenance_json"], "```", ""]
    return "\n".join(lines)


def build_report(study: Study) -> dict[str, Path]:

    with study.store.open_session() as s:
        dataset = stats.compute(iter_records(s))
    predicted = study.state.data.get("predict", {}).get("summary", {})
    split = study.cfg.predict.split
    results = stored_results(study.store, predicted.get("run_ids", []), split)
    table2 = {"split": split, "models": [r["entry"] for r in results]}
    assets = study.out / "report_assets"
    assets.mkdir(exist_ok=True)
    confusions = []
    for r in results:
        model, n = r["entry"]["model"], r["entry"]["n"]
        png = assets / f"confusion_{slug(model)}.png"
        plot_confusion(png, r["metrics"], f"{model}（n={n}）")
        confusions.append((model, png))
    per_emotion = _per_emotion_chart(results, assets / "per_emotion.png")
    evaluation = _evaluation(study)
    provenance = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": study.cfg.model_dump(mode="json"),
        "config_signature": study.fp,
        "database": study.store.engine.url.render_as_string(hide_password=True),
        "versions": _versions(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "stages": study.state.data,
    }
    context = {
        "dataset": dataset, "labels": taxonomy.LABELS, "table2": table2, "table2_keys": TABLE_KEYS,
        "table2_results": results,
        "confusions": [(m, _data_uri(p)) for m, p in confusions if p.exists()],
        "per_emotion": _data_uri(per_emotion) if per_emotion else None,
        "eval": evaluation, "metrics": METRICS, "epitome": EPITOME, "metric_label": metric_label,
        "plots": [_data_uri(p) for p in evaluation["plots"]], "provenance": provenance,
        "provenance_json": to_json(provenance),
        "spend_rows": [(st, spec, u) for st, e in study.state.data.items()
                       for spec, u in (e.get("spend") or {}).items()],
        "spend_totals": spend.totals(study.state.data),
    }
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("emplifai", "study/templates"), autoescape=select_autoescape(["html"]))
    env.filters["num"] = num
    html = study.out / "report.html"
    html.write_text(env.get_template("report.html.j2").render(**context), encoding="utf-8")
    md = study.out / "report.md"
    md.write_text(_markdown(study, context), encoding="utf-8")
    (study.out / "provenance.json").write_text(context["provenance_json"], encoding="utf-8")
    return {"html": html, "markdown": md}
