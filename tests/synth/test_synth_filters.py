"""Filters of `emplifai synth`, one by one, and their precision/recall on the labelled set of bad items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emplifai.dataset.ingest import bundled_corpus_path
from emplifai.records import Record
from emplifai.synth import filters as F
from emplifai.synth.config import FilterConfig
from emplifai.synth.evaluate import load_cases, metrics, screen

CASES = Path(__file__).parents[1] / "data" / "synth_filter_cases.jsonl"


def sample_records() -> list[Record]:
    keys = ("dialogue_id", "situation_id", "emotion", "situation", "patient", "supporter")
    rows = map(json.loads, bundled_corpus_path().read_text("utf-8").splitlines())
    return [Record(**{k: r[k] for k in keys}) for r in rows]


def test_japanese_share_names_the_field() -> None:
    r = F.japanese({"patient": "検査の結果を聞いてほっとしました。", "supporter": "That is great news for you."}, 0.7)
    assert not r.ok and r.reason.startswith("supporter") and r.score == 0.0
    assert F.japanese({"patient": "血糖値が120まで下がったよ。"}, 0.7).ok


def test_length_bounds() -> None:
    bounds = {"patient": (15, 250), "supporter": (15, 250)}
    assert not F.length({"patient": "短い。", "supporter": "x" * 20}, bounds).ok
    assert "patient: 3 characters" in F.length({"patient": "短い。", "supporter": "x" * 20}, bounds).reason
    assert not F.length({"patient": "あ" * 20, "supporter": "い" * 251}, bounds).ok
    assert F.length({"patient": "あ" * 15, "supporter": "い" * 250}, bounds).ok


def test_dedup_exact_near_and_threshold() -> None:
    base = "透析の日、隣のベッドの人がイヤホンを使わずにテレビを見ていて、音が気になって眠れませんでした。"
    idx = F.DedupIndex(0.6)
    idx.add("a", base)
    assert idx.check(" " + base.replace("、", "、 ")).reason == "exact duplicate of a"  # whitespace-insensitive
    near = idx.check(base.replace("テレビ", "動画"))
    assert not near.ok and "near duplicate of a" in near.reason and 0.6 <= near.score < 1.0
    assert idx.check("孫が描いてくれた似顔絵を病室に飾って、毎朝それを見て元気をもらっています。").ok
    strict = F.DedupIndex(0.99)
    strict.add("a", base)
    assert strict.check(base.replace("テレビ", "動画")).ok  # the threshold is a setting


@pytest.mark.parametrize("text", [
    "しばらく薬をやめてみたらいいと思うよ。",
    "インスリンの量を半分に減らしちゃえばいいんじゃない？",
    "痛み止めを3錠くらい飲んでみたらどうでしょう。",
    "たまには透析を休んでもいいと思いますよ。",
    "もう病院には行かなくても大丈夫ですよ。",
    "このサプリで治るって聞くし、試す価値はあるよ。",
])
def test_unsafe_medical_advice_is_caught(text: str) -> None:
    r = F.medical_advice(text)
    assert not r.ok and r.reason.startswith("unsafe medical advice")


@pytest.mark.parametrize("text", [
    "自己判断で薬をやめたりしないで、先生に相談してね。",
    "薬を減らしてもいいか、主治医に相談してみてはどうでしょう。",
    "毎日お薬を続けてきたんですね、本当にえらいです。",
])
def test_safe_wording_near_the_patterns_passes(text: str) -> None:
    assert F.medical_advice(text).ok


def test_self_harm_policies() -> None:
    sit = {"patient": "もう疲れて、死にたいと思う夜があるんだ。"}
    cold = F.self_harm(sit, "そうなんだ。今日の夕飯は何にする？", "care")
    assert not cold.ok and "without a caring" in cold.reason
    warm = F.self_harm(sit, "話してくれてありがとう。その気持ち、主治医や相談窓口にも話してほしいな。", "care")
    assert warm.ok and warm.flag == "self_harm"
    assert not F.self_harm(sit, "話してくれてありがとう。相談窓口にも話してほしいな。", "reject").ok
    assert not F.self_harm({"patient": "つらい"}, "それも一つの選択だと思うよ。", "care").ok
    assert F.self_harm({"patient": "今日は散歩に行けた。"}, "よかったね。", "care") == F.FilterResult("self_harm", True)


@pytest.mark.parametrize(("text", "kind"), [
    ("看護師の山田花子さんが来てくれた。", "full name"),
    ("番号は090-1234-5678です。", "phone number"),
    ("ＴＥＬ：０３－１２３４－５６７８", "phone number"),  # full-width digits are normalised first
    ("連絡は tanaka.k@example.com まで。", "email address"),
    ("家は世田谷区桜丘3丁目なんだ。", "street address"),
    ("患者番号はA12345だって。", "ID number"),
])
def test_personal_data_kinds(text: str, kind: str) -> None:
    r = F.personal_data({"patient": text})
    assert not r.ok and f"({kind})" in r.reason


def test_personal_data_leaves_ordinary_mentions_alone() -> None:
    assert F.personal_data({"patient": "田中さんと一緒に、先生の説明を聞きました。名前はなんていうんですか？"}).ok


@pytest.mark.parametrize(("text", "ok"), [
    ("判定：安全\n理由：問題はありません。", True),
    ("判定：危険\n理由：服薬の中止を勧めている。", False),
    ("危険です。薬をやめるよう勧めています。", False),
    ("よく分かりません", False),
])
def test_llm_safety_verdict_parsing(text: str, ok: bool) -> None:
    r = F.read_safety_verdict(text)
    assert r.ok is ok and r.name == "llm_safety" and (ok or r.reason)


def test_agreement_rank() -> None:
    assert F.agreement("Joy", ["Relief", "Joy", "Pride"], 3, 0.2).ok
    r = F.agreement("Joy", ["Relief", "Joy", "Pride"], 1, 0.2)
    assert not r.ok and "top 1" in r.reason


def test_sample_corpus_passes_the_rules() -> None:
    """The 840 hand-written sample dialogues are good data: the rules must keep (nearly) all of them."""
    cfg = FilterConfig()
    rejected = [r.dialogue_id for r in sample_records()
                if F.first_failure(F.situation_rules(r.situation, cfg)
                                   + F.dialogue_rules(r.situation, r.patient, r.supporter, cfg))]
    assert rejected == []


def test_labelled_set_precision_and_recall() -> None:
    cases = load_cases(CASES)
    assert {c["label"] for c in cases} >= {"good", "duplicate", "english", "unsafe_advice", "personal_data",
                                           "self_harm", "format", "wrong_emotion"}
    screened = screen(cases, sample_records(), FilterConfig())
    m = metrics(screened)
    assert m["false_positives"] == []
    assert m["precision"] == 1.0
    per = m["per_label"]
    for label in ("duplicate", "english", "unsafe_advice", "personal_data", "self_harm", "format", "length"):
        assert per[label]["rejected"] == per[label]["n"], label
    # Wrong emotions are the predictor's job (optional model filter), not the rules'.
    assert per["wrong_emotion"]["rejected"] == 0
    assert m["missed"] == [c["id"] for c in cases if c["label"] == "wrong_emotion"]
    by = {s.case["id"]: s.rejected_by for s in screened}
    assert by["dup-batch-01"] == "duplicate" and by["unsafe-02"] == "medical_advice" and by["en-01"] == "japanese"


def test_holdout_set_written_blind_to_the_rules() -> None:
    """A second labelled set, written by someone who had not read this module; every bad item must be caught
    by the filter its label names, and no good item (medication mentioned with a pointer to the doctor, ages
    and dates, self-harm answered with care) may be turned down."""
    cases = load_cases(CASES.with_name("synth_filter_holdout.jsonl"))
    screened = screen(cases, sample_records(), FilterConfig())
    m = metrics(screened)
    assert m["false_positives"] == [] and m["missed"] == []
    assert m["bad"] == 44 and m["good"] == 26
    wrong_filter = [(s.case["id"], s.rejected_by) for s in screened
                    if s.rejected_by and s.rejected_by not in s.case["expect"]]
    # an e-mail address written in ASCII also lowers the Japanese share below the bound, which fires first
    assert wrong_filter == [("h-pii-03", "japanese")]
    kept = {s.case["id"]: s.results for s in screened if s.rejected_by is None}
    assert any(r.flag == "self_harm" for r in kept["h-good-08"])  # kept, but flagged for the reviewers


@pytest.mark.parametrize(("supporter", "ok"), [
    ("治療が一区切りついたら、ゆっくり休みましょうね。", True),  # rest, not skipping treatment
    ("がっかりした気持ちを置き去りにしなくていいんですよ。", True),  # comfort, no treatment named
    ("インスリンが効きすぎかも。しばらく半分に減らしてみたら？", False),  # treatment named one sentence before
    ("吸入はもうお休みされても問題ないと思いますよ。", False),
    ("お腹壊すような薬なら飲まなくていいって。", False),
    ("寝る前は2錠じゃなくて4錠飲んじゃえばいいんですよ。", False),
    ("玄米菜食だけで腫瘍が消えたんだって。", False),
])
def test_medical_advice_phrasings(supporter: str, ok: bool) -> None:
    assert F.medical_advice(supporter).ok is ok
