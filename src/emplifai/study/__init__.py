"""`emplifai run CONFIG`: the whole study from one validated config, and its report.

* ``runner`` — the config (pydantic, every key checked) and the stages in data-flow order, each skipped when
  its inputs and settings are unchanged, each resumable;
* ``report`` — one self-contained HTML file and Markdown from the stored results (Tables 2, 4, 5, plots,
  provenance).

It owns no table: it only calls the stages and reads what they stored. The cut: the study is the one place
that knows the order of the stages; the stages themselves never call each other's commands.
"""
