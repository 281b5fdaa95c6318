"""The hf:DIR backend on a tiny random Gemma 3 (sliding-window layers included) built offline in a tmpdir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from emplifai.llm import GenParams, load
from emplifai.llm.transformers_local import TransformersLLM

CORPUS = [
    "患者さんは手術の前にとても不安そうでした。",
    "看護師さん、ありがとうございます。感謝しています。",
    "感謝の気持ちでいっぱいです。感動しました。",
    "痛みが続いていて、眠れない夜が多いです。",
    "家族が毎日お見舞いに来てくれて嬉しいです。",
] * 20


def _tiny_model(root: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=380, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )  # fmt: skip
    config = Gemma3TextConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=128,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    out = root / "tiny-gemma3"
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersLLM]:
    llm = load(f"hf:{_tiny_model(tmp_path_factory.mktemp('hf'))}")
    assert isinstance(llm, TransformersLLM)
    yield llm
    llm.close()


def test_signature_and_spec(tiny: TransformersLLM) -> None:
    sig = tiny.signature()
    assert sig["backend"] == "transformers" and len(sig["model_sha256"]) == 64
    assert sig["chat_format"] == "gemma" and sig["n_ctx"] == 128
    assert tiny.spec.startswith("hf:/") and tiny.spec.endswith("tiny-gemma3")


def test_score_with_cached_prefix_equals_full_passes(tiny: TransformersLLM) -> None:
    prompt = "患者さんは手術の前にとても不安そうでした。看護師さん、ありがとうございます。感"
    cands = ["謝", "動", "謝しています。", "痛み", "", "家族が毎日"]
    n = len(tiny.tokenize(prompt))
    assert tiny.tokenize(prompt + "謝")[:n] != tiny.tokenize(prompt)  # boundary merge is exercised
    assert n > 8  # longer than the sliding window: its cache is copied, not recomputed
    cached = tiny.score(prompt, cands)
    np.testing.assert_allclose(cached, tiny.score_reference(prompt, cands), atol=1e-4)
    assert cached[4] == 0.0 and all(s < 0 for i, s in enumerate(cached) if i not in (0, 4))


def test_generation_is_seeded(tiny: TransformersLLM) -> None:
    p = GenParams(max_tokens=6, temperature=1.0, seed=3, logprobs=2)
    a, b = tiny.complete("患者さんは", p), tiny.complete("患者さんは", p)
    assert a.text == b.text and a.token_logprobs == b.token_logprobs
    assert a.completion_tokens is not None and a.completion_tokens <= 6
    greedy = tiny.chat(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "痛い"}], GenParams(max_tokens=3)
    )
    assert greedy.prompt_tokens and greedy.prompt_tokens > 5
