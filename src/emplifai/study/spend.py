"""What the study spent (or, for ``--plan``, will spend): per stage and model, priced from the config's table.

The counting is :mod:`emplifai.llm.meter`'s; this module adds the money and the views (state.json, report).
A model without a price entry (the embedded model, a local GGUF, your own vLLM) costs nothing here: its cost
is ``None``, never 0, so a missing price does not read like a free API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emplifai.formatting import num
from emplifai.llm.meter import Ledger
from emplifai.study.config import RunConfig

COUNTS = ("calls", "retries", "failures", "cached", "prompt_tokens", "completion_tokens", "usage_missing", "seconds")


def cost(cfg: RunConfig, spec: str, prompt_tokens: float, completion_tokens: float) -> dict[str, Any] | None:
    """{"amount", "currency"} from the price table, or None when the model has no price entry."""
    p = cfg.price(spec)
    if p is None:
        return None
    amount = (prompt_tokens * p.prompt_per_million + completion_tokens * p.completion_per_million) / 1e6
    return {"amount": round(amount, 6), "currency": p.currency}


def stage_spend(cfg: RunConfig, ledger: Ledger, stage: str) -> dict[str, dict[str, Any]]:
    """{spec: counts + cost} of what one stage spent."""
    out = {}
    for spec, usage in ledger.stage(stage).items():
        out[spec] = {**usage, "cost": cost(cfg, spec, usage["prompt_tokens"], usage["completion_tokens"])}
    return out


def totals(state: Mapping[str, Any]) -> dict[str, Any]:
    """Sums over the stages in state.json: per model, and the cost per currency."""
    per_model: dict[str, dict[str, Any]] = {}
    money: dict[str, float] = {}
    for entry in state.values():
        for spec, u in (entry.get("spend") or {}).items():
            row = per_model.setdefault(spec, dict.fromkeys(COUNTS, 0))
            for k in COUNTS:
                row[k] = round(row[k] + u.get(k, 0), 3)
            if u.get("cost"):
                c = u["cost"]
                money[c["currency"]] = round(money.get(c["currency"], 0.0) + c["amount"], 6)
    return {"models": per_model, "cost": money}


def markdown(state: Mapping[str, Any]) -> str:
    """The spend table of the report: one row per stage and model, then the totals."""
    head = "| stage | model | calls | retries | failures | cached | prompt tokens | completion tokens | " \
           "no usage | wall s | cost |"
    lines = ["# What the run spent", "", head, "|" + "---|" * 11]
    for stage, entry in state.items():
        for spec, u in (entry.get("spend") or {}).items():
            lines.append(f"| {stage} | {spec} | " + " | ".join(str(u.get(k, 0)) for k in COUNTS[:-1])
                         + f" | {num(u.get('seconds'), 1)} | {_money(u.get('cost'))} |")
    t = totals(state)
    if len(lines) == 4:
        lines.append("| – | no model was called | | | | | | | | | |")
    lines += ["", "Total cost: " + (", ".join(f"{v:.4f} {k}" for k, v in t["cost"].items()) or
                                    "none priced (models without a `[[prices]]` entry are not counted)") + ".",
              "Retries are re-asks of the same input (the judge after an invalid answer); HTTP retries inside a "
              "backend are not counted. `no usage`: calls that reported no token counts (score calls never do).",
              ""]
    return "\n".join(lines)


def _money(c: Mapping[str, Any] | None) -> str:
    return f"{c['amount']:.4f} {c['currency']}" if c else "–"
