"""Prompt templates (Jinja2, Japanese first, English where asked), one module per task.

Each prompt has a version string; it is stored with every output so a changed prompt never mixes with old results.
"""

from __future__ import annotations

from functools import cache

import jinja2


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("emplifai", "prompts/templates"),
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, never an empty string in a prompt
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(template: str, **variables: object) -> str:
    return environment().get_template(template).render(**variables).strip()
