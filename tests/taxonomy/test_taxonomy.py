import pytest

from emplifai import taxonomy
from emplifai.taxonomy import Group, normalise, parse_label

TABLE1 = [
    ("Admiration", "称賛", "Positive"), ("Amusement", "娯楽", "Positive"), ("Approval", "承認", "Positive"),
    ("Caring", "思いやり", "Positive"), ("Desire", "願望", "Positive"), ("Excitement", "興奮", "Positive"),
    ("Gratitude", "感謝", "Positive"), ("Joy", "喜び", "Positive"), ("Love", "愛", "Positive"),
    ("Optimism", "楽観", "Positive"), ("Pride", "誇り", "Positive"), ("Relief", "安心", "Positive"),
    ("Anger", "怒り", "Negative"), ("Annoyance", "迷惑", "Negative"), ("Disappointment", "失望", "Negative"),
    ("Disapproval", "不承認", "Negative"), ("Disgust", "嫌悪", "Negative"), ("Embarrassment", "恥ずかしさ", "Negative"),
    ("Fear", "恐れ", "Negative"), ("Grief", "嘆き", "Negative"), ("Nervousness", "緊張", "Negative"),
    ("Remorse", "後悔", "Negative"), ("Sadness", "悲しみ", "Negative"), ("Confusion", "混乱", "Ambiguous"),
    ("Curiosity", "好奇心", "Ambiguous"), ("Realization", "気づき", "Ambiguous"), ("Surprise", "驚き", "Ambiguous"),
    ("Neutral", "平静", "Neutral"),
]


def test_table1_exactly():
    assert [(lab.en, lab.ja, str(lab.group)) for lab in taxonomy.LABELS] == TABLE1
    assert all(lab.definition_en and lab.definition_ja for lab in taxonomy.LABELS)
    assert {g: len(taxonomy.by_group(g)) for g in Group} == {
        Group.POSITIVE: 12, Group.NEGATIVE: 11, Group.AMBIGUOUS: 4, Group.NEUTRAL: 1}


@pytest.mark.parametrize(("en", "ja", "_g"), TABLE1)
def test_names_map_to_themselves(en, ja, _g):
    assert normalise(en).en == en
    assert normalise(ja).en == en
    assert normalise(en.upper()).en == en


@pytest.mark.parametrize(
    ("text", "expected", "rule"),
    [
        ("ｓａｄｎｅｓｓ", "Sadness", "exact"),  # full-width latin
        ("  joy \n", "Joy", "exact"),
        ("「悲しみ」", "Sadness", "exact"),  # Japanese quotes
        ("『安心』。", "Relief", "exact"),
        ('"Gratitude".', "Gratitude", "exact"),
        ("（恐れ）", "Fear", "exact"),  # full-width brackets
        ("【感謝】", "Gratitude", "exact"),
        ("感情：喜び", "Joy", "exact"),  # prefixes
        ("感情: 「失望」", "Disappointment", "exact"),
        ("Emotion: Anger", "Anger", "exact"),
        ("答えは驚き", "Surprise", "exact"),
        ("7. 感謝", "Gratitude", "exact"),  # numbered list item
        ("- Pride", "Pride", "exact"),
        ("Sadness (悲しみ)", "Sadness", "name with gloss"),
        ("悲しみ（Sadness）", "Sadness", "name with gloss"),
        ("かなしみ", "Sadness", "exact"),  # documented synonyms
        ("嬉しさ", "Joy", "exact"),
        ("不安", "Nervousness", "exact"),
        ("disappointed", "Disappointment", "exact"),
        ("不承認", "Disapproval", "exact"),  # not 承認
        ("この対話の感情は失望だと思います。", "Disappointment", "one label named within the text"),
        ("感情：後悔\n理由：自分を責めているから", "Remorse", "exact"),  # only the first line counts
    ],
)
def test_normalise_rules(text, expected, rule):
    m = parse_label(text)
    assert m.label is not None and m.label.en == expected
    assert m.reason == rule


@pytest.mark.parametrize(
    ("text", "reason_part"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        ("「」", "nothing left"),
        ("喜びと悲しみ", "several labels"),
        ("Sadness (喜び)", "disagree"),
        ("わからない", "no label"),
        ("happyish mood", "no label"),  # no partial English words
        ("可愛い", "no label"),  # 愛 inside another word is not Love
    ],
)
def test_unmappable_returns_none_with_reason(text, reason_part):
    m = parse_label(text)
    assert m.label is None
    assert reason_part in m.reason
    assert normalise(text) is None


def test_get_rejects_unknown_with_valid_names():
    assert taxonomy.get("喜び").en == "Joy"
    with pytest.raises(KeyError, match="Admiration"):
        taxonomy.get("Happiness")


def test_by_name_accepts_any_case_and_japanese_only():
    from emplifai import taxonomy as tx

    assert tx.by_name("admiration").en == "Admiration" and tx.by_name("JOY").en == "Joy"
    assert tx.by_name("嫌悪").en == "Disgust" and tx.by_name(" Ｆｅａｒ ").en == "Fear"
    assert tx.by_name("happiness") is None and tx.by_name("かなしみ") is None  # synonyms are not names
    assert tx.get("grief").ja == "嘆き" and tx.resolve(["sadness", "かなしみ"]) == ["Sadness"]
