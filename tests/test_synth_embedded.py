"""`emplifai synth` on the REAL embedded model (Gemma 3 270M, offline): one emotion, one item.

The 270M base model writes weak Japanese, so whether the item survives the filters is not asserted; what is
asserted is that the run finishes offline, every candidate ends accepted/rejected/failed with its stage outputs
and reason, accepted ones are pending synthetic rows with the model's signature, and a rerun redoes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from emplifai.ingest import import_file, sample_path
from emplifai.llm import load as load_model
from emplifai.store.db import Store
from emplifai.store.models import Dialogue
from emplifai.store.synth import State, SynthCandidate
from emplifai.synth import SynthConfig, Synthesizer, TokenLimits


@pytest.mark.slow
def test_embedded_model_fills_one_item(sqlite_url: str, tmp_path: Path) -> None:
    rows = [json.loads(x) for x in sample_path().read_text("utf-8").splitlines()]
    rows = [r for r in rows if r["emotion"] in ("Grief", "Sadness")][:-1]  # Grief lacks one dialogue
    src = tmp_path / "two.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    store = Store(sqlite_url)
    import_file(store, src)
    cfg = SynthConfig(emotions=("Sadness",), rounds=1, shots=1, scenarios_per_call=1,
                      max_tokens=TokenLimits(brainstorm=60, rewrite=90, dialogue=120))
    llm = load_model("embedded")
    try:
        syn = Synthesizer(store, llm, cfg, model="embedded")
        assert [p.deficit for p in syn.plan()] == [1]
        report = syn.run()
        again = Synthesizer(store, llm, cfg, model="embedded")
        assert again.plan()[0].planned == 0 or report.counts.get("accepted_dialogues", 0) == 0
    finally:
        llm.close()
    assert 1 <= report.calls <= 3 and report.llm_seconds > 0
    with store.sessions() as s:
        cands = s.scalars(select(SynthCandidate)).all()
        assert cands and all(c.state in State.terminal() for c in cands)
        assert all(c.reason for c in cands if c.state != State.ACCEPTED)
        assert all(c.stages.get("brainstorm", {}).get("raw") is not None for c in cands if c.kind == "situation")
        for d in s.scalars(select(Dialogue).where(Dialogue.source == "synthetic")):
            assert d.status == "pending" and d.meta["synth"]["signature"]["model_sha256"]
    assert report.counts.get("accepted_dialogues", 0) + report.counts.get("rejected_dialogues", 0) \
        + report.counts.get("failed_dialogues", 0) + report.counts.get("rejected_situations", 0) \
        + report.counts.get("failed_situations", 0) >= 1
