"""How numbers are written in every table emplifai prints: one rule for a missing value, decimals, shares.

A missing number is "–" everywhere (Markdown, HTML, CLI), never "None", "nan" or 0, so a reader can tell
"not computed" from "zero"; the JSON beside each table says why it is missing.
"""

from __future__ import annotations

import json
import math

MISSING = "–"


def num(x: float | int | str | None, digits: int = 2) -> str:
    """A float with ``digits`` decimals; other values (counts, notes) as they are."""
    if x is None:
        return MISSING
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def pct(x: float | None, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage."""
    return MISSING if x is None else f"{100 * x:.{digits}f}%"


def delta(a: float | None, b: float | None, digits: int = 2, as_points: bool = False) -> str:
    """b − a with its sign; for shares (``as_points``) in percentage points."""
    if a is None or b is None:
        return MISSING
    d = b - a
    return f"{100 * d:+.{digits}f} pt" if as_points else f"{d:+.{digits}f}"


def pvalue(p: float | None) -> str:
    """A p-value as a reader can quote it: never "0.00"; below 1e-4 as "<1e-4"."""
    if p is None:
        return MISSING
    return "<1e-4" if p < 1e-4 else f"{p:.4f}"


def finite_or_none(x: object) -> object:
    """The value with every non-finite float (NaN, ±inf) replaced by None, through dicts, lists and tuples."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_or_none(v) for v in x]
    return x


def to_json(data: object, *, indent: int | None = 2) -> str:
    """Strict JSON (RFC 8259) for every file and report emplifai writes: a missing number is null, never NaN."""
    return json.dumps(finite_or_none(data), indent=indent, ensure_ascii=False, allow_nan=False, default=str)
