"""What the web app accepts as text: UTF-8 only, no control characters, ids within the database's range.

Browsers percent-encode every form; Starlette decodes the bytes as UTF-8 and turns invalid ones (a Shift_JIS
page, a broken client) into U+FFFD, and raw non-ASCII bytes into Latin-1 mojibake. Both are refused here, with a
Japanese message, before anything is stored. Control characters (NUL above all: PostgreSQL cannot store it and
answered with a 500) are refused too; only tab and line breaks are text.
"""

from __future__ import annotations

import re

from emplifai.errors import UserError

MAX_ID = 2**31 - 1  # the id columns are 32-bit on PostgreSQL; a larger id cannot exist
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
ENCODING_JA = ("送信された文字が UTF-8 として読めません（文字化けを防ぐため受け付けませんでした）。"
               "ブラウザの文字コードを UTF-8 にして、もう一度入力してください。")
# Japanese names of the form fields, for messages (an unknown field is named as it is).
FIELD_JA = {"situation": "状況", "patient": "患者の発話", "supporter": "支援者の応答", "reason": "理由",
            "username": "ユーザー名", "password": "パスワード", "display_name": "表示名", "role": "役割",
            "name": "名前", "campaign_id": "キャンペーン", "kind": "種類", "emotions": "感情",
            "round1_target": "第1ラウンドの目標数", "round2_target": "第2ラウンドの目標数",
            "pay_situation": "状況の報酬", "pay_dialogue": "会話の報酬", "rejection_cap": "却下の上限",
            "lease_minutes": "作業時間", "status": "状態", "fmt": "形式", "scope": "範囲"}


class BadText(UserError):
    """A field holds control characters or text that was not valid UTF-8."""


def field_ja(name: str) -> str:
    return FIELD_JA.get(name, name)


def check_charset(content_type: str) -> None:
    """A form declared in another encoding (charset=shift_jis …) is refused, not read as mojibake."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value.strip('"').lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise BadText(ENCODING_JA)


# Scope key set when an URL-encoded body holds raw bytes above 0x7f: browsers percent-encode every form, and
# Starlette would read such bytes as Latin-1 mojibake.
RAW_BYTES = "emplifai.raw_bytes"


def check_text(name: str, value: str) -> None:
    """Raise BadText (Japanese, naming the field and the position) for undecodable text or a control character."""
    if "\ufffd" in value:
        raise BadText(f"{field_ja(name)}：{ENCODING_JA}")
    if m := CONTROL.search(value):
        raise BadText(f"{field_ja(name)}に使えない制御文字（U+{ord(m.group()):04X}）が含まれています"
                      f"（{m.start() + 1}文字目）。その文字を取り除いてください")


def scrub(value: str) -> str:
    """The typed text without its control characters (shown back in the form so nothing else is lost)."""
    return CONTROL.sub("", value)


# Starlette's own English reasons ("Not Found", "Method Not Allowed") as the pages show them.
STATUS_JA = {400: "リクエストが正しくありません", 401: "ログインが必要です", 403: "この操作を行う権限がありません",
             404: "ページが見つかりません", 405: "この操作はこのページではできません",
             413: "送信された内容が大きすぎます", 422: "入力内容が正しくありません", 429: "リクエストが多すぎます",
             500: "サーバーで問題が起きました"}


def validation_ja(error: dict) -> str:
    """One pydantic/FastAPI validation error as a Japanese sentence naming the field."""
    loc = [str(x) for x in error.get("loc", ()) if x not in ("body", "query", "path", "header", "cookie")]
    name = field_ja(loc[-1]) if loc else "入力"
    kind = str(error.get("type", ""))
    if kind == "missing":
        return f"{name}を入力してください"
    if kind.startswith(("int_", "float_")):
        return f"{name}には数値を入力してください"
    if kind in ("less_than_equal", "greater_than_equal", "less_than", "greater_than"):
        return f"{name}の値が範囲外です"
    if kind.startswith("string_"):
        return f"{name}の文字数が正しくありません"
    return f"{name}の値が正しくありません"
