"""The SFT examples and the proof that the loss sees them.

One example per training dialogue: the crowd-worker instruction for its emotion and situation is the prompt,
exactly as generation sends it; the two-turn dialogue in the generation format (``患者：…\\n支援者：…``) is the
completion. The loss covers the completion tokens only, and :func:`check_loss_mask` refuses to train when
that mask is empty: a mask that silently covers nothing trains on nothing (loss 0.0) and still "succeeds".
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emplifai.errors import UserError
from emplifai.llm import END_OF_TURN, Message, render_gemma
from emplifai.prompts import generation
from emplifai.records import Source, Status
from emplifai.store import repo
from emplifai.store.db import open_store

from .config import FinetuneConfig, Lang, PromptFormat

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase
    from trl import SFTTrainer

#: the token the embedded Gemma ends a sequence with; any other tokenizer brings its own
GEMMA_EOS = "<eos>"


@dataclass(frozen=True)
class Example:
    dialogue_id: str
    prompt: str
    completion: str


def prompt_text(emotion: str, situation: str, prompt_format: PromptFormat = "chat", lang: Lang = "ja",
                tokenizer: PreTrainedTokenizerBase | None = None) -> str:
    """The model input: exactly what generation sends. chat: one user turn, through the tokenizer's chat
    template when it has one (any HF model), else the Gemma template the llama.cpp backend uses."""
    inst = generation.instruction(emotion, situation, lang=lang)
    if prompt_format == "plain":
        return inst + "\n\n"
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": inst}], tokenize=False,
                                             add_generation_prompt=True)
    return render_gemma([Message(role="user", content=inst)])


def completion_text(patient: str, supporter: str, prompt_format: PromptFormat, eos: str,
                    tokenizer: PreTrainedTokenizerBase | None = None) -> str:
    """The target: the dialogue in the generation format, then the end of the model's turn."""
    dialogue = generation.format_dialogue(patient, supporter)
    if prompt_format == "plain":
        return dialogue + eos
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        # whatever the template writes after the assistant text (its end-of-turn marker), then EOS
        msgs = [{"role": "user", "content": "x"}, {"role": "assistant", "content": dialogue}]
        full = tokenizer.apply_chat_template(msgs, tokenize=False)
        end = full[full.rindex(dialogue) + len(dialogue):].rstrip("\n")
        return dialogue + end + ("" if end.endswith(eos) else eos)
    return dialogue + END_OF_TURN + eos  # llama.cpp stops on <end_of_turn> (an end-of-generation token)


def _wanted(r: Any, cfg: FinetuneConfig) -> bool:
    """Whether a record joins the training data: its source is listed, and a synthetic one passed review."""
    if cfg.train_sources is None:
        return True
    return r.source in cfg.train_sources and (r.source != Source.SYNTHETIC or r.status == Status.APPROVED)


def load_examples(db: str | None, cfg: FinetuneConfig, eos: str = GEMMA_EOS,
                  tokenizer: PreTrainedTokenizerBase | None = None) -> tuple[list[Example], list[Example], int]:
    """(train, validation, manifest id) from the stored split. Errors name the missing step."""
    store = open_store(db)
    try:
        with store.transaction() as s:
            manifest = repo.latest_manifest(s, cfg.split_name)
            if manifest is None:
                raise UserError(
                    f"no split named {cfg.split_name!r} in the database; run `emplifai dataset split` first "
                    "(fine-tuning reads its train and validation splits)"
                )
            out = {}
            for split in ("train", "validation"):
                out[split] = [
                    Example(r.dialogue_id, prompt_text(r.emotion, r.situation, cfg.prompt_format, cfg.lang, tokenizer),
                            completion_text(r.patient, r.supporter, cfg.prompt_format, eos, tokenizer))
                    for r in repo.iter_records(s, split=split, manifest=manifest) if _wanted(r, cfg)
                ]
            manifest_id = manifest.id
    finally:
        store.dispose()
    train, val = out["train"], out["validation"]
    if not train:
        raise UserError(f"the training split of {cfg.split_name!r} is empty: nothing to fine-tune on "
                        "(import dialogues, then rerun `emplifai dataset split`)")
    rng = random.Random(cfg.seed)
    if cfg.max_train_examples and len(train) > cfg.max_train_examples:
        train = rng.sample(train, cfg.max_train_examples)
    if cfg.max_eval_examples and len(val) > cfg.max_eval_examples:
        val = rng.sample(val, cfg.max_eval_examples)
    return train, val, manifest_id


def mask_stats(dataset: Dataset) -> dict[str, Any]:
    """Count the tokens the loss sees, per example, from the prepared dataset's labels (or completion mask)."""
    cols = dataset.column_names
    per: list[int] = []
    lengths: list[int] = []
    for row in dataset:
        if "labels" in cols:
            # labels[i] is the target of position i-1; the first position is never a target
            n = sum(1 for x in row["labels"][1:] if x != -100)
        elif "completion_mask" in cols:
            n = sum(row["completion_mask"][1:])
        else:
            n = len(row["input_ids"]) - 1
        per.append(n)
        lengths.append(len(row["input_ids"]))
    return {
        "examples": len(per),
        "target_tokens": sum(per),
        "input_tokens": sum(lengths),
        "examples_without_target": sum(1 for n in per if n == 0),
        "target_share": (sum(per) / sum(lengths)) if lengths else 0.0,
    }


def check_loss_mask(trainer: SFTTrainer, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Refuse to train when the loss would see no target token, and prove the mask covers the dialogue."""
    stats = mask_stats(trainer.train_dataset)
    if stats["target_tokens"] == 0:
        raise UserError(
            "the loss mask is all zeros: no target token would be trained on (the prompt may fill max_length, "
            "or the completion mask was lost). Raise max_length or check the prompt format."
        )
    if stats["examples_without_target"]:
        raise UserError(f"{stats['examples_without_target']} training example(s) have no target token left after "
                        f"truncation to max_length={trainer.args.max_length}; raise max_length")
    # The collated batch is what the loss really gets: check it too, and that the unmasked text is the dialogue.
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = batch["labels"][0]
    kept = [int(t) for t in labels.tolist() if t != -100]
    if not kept:
        raise UserError("the collated batch has no target token: the loss mask is all zeros")
    target = tokenizer.decode(kept, skip_special_tokens=True)
    if "支援者" not in target or "状況" in target:
        raise UserError(f"the loss mask does not cover exactly the dialogue; trained text starts {target[:80]!r}")
    stats["first_target_text"] = target
    return stats
