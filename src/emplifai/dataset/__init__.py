"""The dataset itself: files in and out, what it looks like, how it is split, and how its items are reviewed.

* ``formats`` — JSONL (canonical), CSV, Parquet and Hugging Face folders, read with line numbers so every
  problem names file, line and field;
* ``ingest``  — import that never corrupts (one transaction per file, the store unchanged on error);
* ``export``  — the store back to the formats, streamed; the HF export follows the stored split;
* ``stats``   — the paper's §3.5 figures plus balance and duplicates;
* ``splits``  — leak-free train/validation/test, grouped by situation, stratified by emotion;
* ``review``  — the one table of review decisions (who may do what to which status), used by the CLI and the
  web app alike;
* ``dedup``   — the one home of duplicate detection (normalisation, MinHash settings, the index).

It owns the core tables (``situations``, ``dialogues``, ``review_events``, ``split_manifests``,
``split_members``; defined in :mod:`emplifai.store.models`). The cut: everything here works on the dataset as
the paper defines it, whoever wrote the items — crowd workers (:mod:`emplifai.collect`) or a model
(:mod:`emplifai.synth`) — so both producers share its rules instead of keeping their own.
"""
