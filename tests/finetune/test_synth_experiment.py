"""SynthEmpathy's experiment configs: both arms validate, differ only in their training sources, and the
training data of each arm is what it says (synthetic dialogues only once approved)."""

from __future__ import annotations

from pathlib import Path

import pytest

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


# ------------------------------------------------------------------------------- `emplifai experiment`
TINY_ARM = '["max_steps=1", "max_train_examples=6", "max_eval_examples=2", "eval_before_training=false", ' \
           '"save_steps=1", "logging_steps=1"]'


def _experiment_config(tmp_path: Path, **compare: str) -> Path:
    extra = "".join(f"{k} = {v}\n" for k, v in compare.items())
    p = tmp_path / "exp.toml"
    p.write_text(f'[crowd]\nconfig = "{CONFIGS / "crowd.yaml"}"\noverrides = {TINY_ARM}\n'
                 f'[crowd_synthetic]\nconfig = "{CONFIGS / "crowd_synthetic.yaml"}"\noverrides = {TINY_ARM}\n'
                 f'[compare]\nn = 2\npredict_limit = 2\n{extra}', encoding="utf-8")
    return p


def _store_with_synthetic(tmp_path: Path, approved: bool = True) -> str:
    db = f"sqlite:///{tmp_path / 'exp.db'}"
    rows = [record(i, sit=i, source="crowd") for i in range(140)]  # 5 situations per emotion: test is not empty
    rows += [record(200 + i, sit=i, source="synthetic", status="approved" if approved else "pending")
             for i in range(60)]
    store = Store(db)
    import_file(store, write_jsonl(tmp_path / "c.jsonl", rows))
    make_split(store, seed=42, fractions=(0.8, 0.1, 0.1))
    store.dispose()
    return db


def test_experiment_config_errors_before_any_training(tmp_path: Path) -> None:

    from emplifai.errors import UserError
    from emplifai.finetune import experiment

    with pytest.raises(UserError, match="unknown rubric set"):
        experiment.read(_experiment_config(tmp_path, rubrics='"sharma"'))
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[crowd]\nconfig = "{CONFIGS / "crowd.yaml"}"\noverrides = ["epochs=3"]\n'
                   f'[crowd_synthetic]\nconfig = "{CONFIGS / "crowd_synthetic.yaml"}"\n', encoding="utf-8")
    with pytest.raises(UserError, match="differ only in train_sources; they also differ in epochs"):
        experiment.read(bad)
    bad.write_text("[crowd]\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"crowd\.config: Field required"):
        experiment.read(bad)
    cfg, arms = experiment.read(Path(__file__).resolve().parents[2] / "configs" / "synth_experiment.toml")
    assert cfg.metric_keys == (*rubric_keys("paper"), *rubric_keys("epitome"))
    assert arms["crowd"].train_sources == ["crowd"] and arms["crowd_synthetic"].train_sources == ["crowd", "synthetic"]
    db = _store_with_synthetic(tmp_path, approved=False)
    with pytest.raises(UserError, match="no approved synthetic dialogue"):
        experiment.run(_experiment_config(tmp_path), tmp_path / "out", db)
    small = f"sqlite:///{tmp_path / 'small.db'}"  # 40 situations over 28 emotions: every one lands in train
    store = Store(small)
    import_file(store, write_jsonl(tmp_path / "s.jsonl", [record(i, sit=i) for i in range(40)]))
    make_split(store, seed=42, fractions=(0.8, 0.1, 0.1))
    store.dispose()
    with pytest.raises(UserError, match="the test split is empty"):
        experiment.run(_experiment_config(tmp_path), tmp_path / "out", small)
    assert not (tmp_path / "out" / "ft-crowd").exists()  # nothing trained


def rubric_keys(name: str) -> tuple[str, ...]:
    from emplifai.evaluate.rubrics import rubric_set

    return rubric_set(name)


@pytest.mark.slow
def test_experiment_runs_both_arms_for_real_and_resumes(tmp_path: Path) -> None:
    """Reduced size, real embedded model: two one-step LoRA fine-tunes, generation on 2 test situations, the
    embedded judge on all 10 metrics, taxonomy validation on 2 dialogues; a rerun redoes nothing."""
    import json
    import subprocess
    import sys

    db = _store_with_synthetic(tmp_path)
    exe = str(Path(sys.executable).parent / "emplifai")
    cmd = [exe, "experiment", str(_experiment_config(tmp_path)), "--out", str(tmp_path / "out"), "--db", db]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "out"
    prov = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    a, b = prov["arms"]["crowd"], prov["arms"]["crowd_synthetic"]
    assert a["spec"] == f"embedded+lora:{out / 'ft-crowd' / 'adapter.gguf'}"
    assert b["spec"] == f"embedded+lora:{out / 'ft-crowd_synthetic' / 'adapter.gguf'}"
    assert a["steps"] == b["steps"] == 1 and a["train_examples"] == b["train_examples"] == 6
    assert a["config"]["train_sources"] == ["crowd"] and b["config"]["train_sources"] == ["crowd", "synthetic"]
    assert prov["approved_synthetic_in_train"] > 0 and prov["emplifai"]
    table = json.loads((out / "compare" / "compare.json").read_text(encoding="utf-8"))
    assert table["columns"]["before"]["spec"] == a["spec"] and table["columns"]["after"]["spec"] == b["spec"]
    assert table["judge"]["spec"] == "embedded"
    assert table["judge"]["metrics"] == [*rubric_keys("paper"), *rubric_keys("epitome")]
    for col in ("before", "after"):
        judged = table["columns"][col]["judge"]
        assert set(judged) == set(table["judge"]["metrics"])
        assert all(v["n"] == 2 for v in judged.values())  # every item scored (by the judge or the malformed rule)
        for m in rubric_keys("epitome"):
            assert 0 <= judged[m]["mean"] <= 2
        assert table["columns"][col]["taxonomy"]["n"] == 2
    md = (out / "compare" / "compare.md").read_text(encoding="utf-8")
    assert "emotional_reactions" in md or "感情的反応" in md

    adapter = out / "ft-crowd" / "adapter.gguf"
    before = adapter.stat().st_mtime_ns
    first = table["judge"]["scored"] + table["judge"]["by_rule"]
    assert first == 2 * 2 * 10  # 2 situations × 2 arms × 10 metrics, by the judge or by the malformed rule
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads((out / "compare" / "compare.json").read_text(encoding="utf-8"))
    assert adapter.stat().st_mtime_ns == before  # the finished fine-tune was reused, not retrained
    assert again["judge"]["scored"] == again["judge"]["by_rule"] == 0  # every judgement already stored
    assert again["columns"] == table["columns"]
