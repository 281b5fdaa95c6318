"""SynthEmpathy's experiment configs: both arms validate, differ only in their training sources, and the
training data of each arm is what it says (synthetic dialogues only once approved)."""

from __future__ import annotations

from pathlib import Path

from emplifai.dataset.ingest import import_file
from emplifai.dataset.splits import make_split
from emplifai.finetune.config import load_config
from emplifai.finetune.data import load_examples
from emplifai.store.db import Store
from tests.helpers import record, write_jsonl

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "synth_experiment"


def test_both_arms_validate_and_differ_only_in_sources() -> None:
    a = load_config(CONFIGS / "crowd.yaml")
    b = load_config(CONFIGS / "crowd_synthetic.yaml")
    assert a.train_sources == ["crowd"] and b.train_sources == ["crowd", "synthetic"]
    assert a.model_dump(exclude={"train_sources"}) == b.model_dump(exclude={"train_sources"})


def test_training_data_per_arm(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    rows = [record(i, sit=i, source="crowd") for i in range(40)]
    rows += [record(100 + i, sit=i, source="synthetic", status="approved") for i in range(40)]
    rows += [record(200 + i, sit=i, source="synthetic", status="pending") for i in range(40)]
    store = Store(db)
    import_file(store, write_jsonl(tmp_path / "c.jsonl", rows))
    make_split(store, seed=42, fractions=(0.8, 0.1, 0.1))
    store.dispose()
    over = ["max_train_examples=1000"]
    crowd, _, _ = load_examples(db, load_config(CONFIGS / "crowd.yaml", over))
    both, _, _ = load_examples(db, load_config(CONFIGS / "crowd_synthetic.yaml", over))
    everything, _, _ = load_examples(db, load_config(None, over))
    ids = {e.dialogue_id for e in crowd}
    assert ids and all(i.startswith("d000") for i in ids)  # d00000–d00039: the crowd rows
    synth = {e.dialogue_id for e in both} - ids
    assert synth and all(100 <= int(i[1:]) < 140 for i in synth)  # approved synthetic only, never pending
    assert len(everything) > len(both)  # without train_sources the pending ones are in, as before
