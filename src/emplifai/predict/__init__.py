"""Taxonomy validation by reverse-engineering (paper §4, Table 2): can a model tell each dialogue's emotion?

* ``prompt``   — the Japanese prompt listing the 28 labels, and how an answer (scores or free text) is read;
* ``runs``     — one model over one split: resumable, every item stored with its raw output and status;
* ``baseline`` — a TF-IDF + logistic-regression reference trained on the same split;
* ``validate`` — every model and the baseline, scored with :mod:`emplifai.metrics`, Table 2 stored and written;
* ``table2``   — Table 2's stored rows (``prediction_metrics``), Markdown, per-emotion CSVs, confusion plots.

It owns ``predictions`` and ``prediction_metrics`` (:mod:`emplifai.store.predict`). The cut: predicting and
scoring are separate (``metrics`` knows nothing of prompts), and Table 2 reaches the report through the store,
so a report never depends on the file names of this stage.
"""
