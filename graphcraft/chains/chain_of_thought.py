"""Chain-of-thought prompting and final-answer extraction.

`chain_of_thought(model)` is a Runnable: {"question"} -> {"reasoning", "answer"}. The prompt asks
for step-by-step reasoning ending in a line "Answer: ..."; `extract_final_answer` reads that line
(or a \\boxed{} value, or the last line) and `normalize_answer` maps equivalent answers
("1,000.0", "1000") to one key so self-consistency can vote over them.
"""

from __future__ import annotations

import re
import string

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableLambda

from graphcraft.models import message_text

COT_SYSTEM = (
    "Think through the problem step by step, showing your reasoning briefly. "
    "Finish with a last line of the form 'Answer: <final answer>' containing only the answer."
)

_ANSWER = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:=]\s*(.+)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_NUMBER = re.compile(r"^[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def cot_messages(question: str, system: str = COT_SYSTEM) -> list[BaseMessage]:
    return [SystemMessage(system), HumanMessage(question)]


def extract_final_answer(text: str) -> str:
    """The model's final answer: last 'Answer: ...' line, else a \\boxed{} value, else the last line."""
    matches = _ANSWER.findall(text)
    if matches:
        return matches[-1].strip()
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1].strip()
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def normalize_answer(answer: str) -> str:
    """A canonical key: lower case, no articles/punctuation/extra spaces, numbers in one form."""
    text = answer.strip().lower().rstrip(".")
    text = text.replace("$", "").replace("%", "").strip()
    compact = text.replace(" ", "")
    if _NUMBER.match(compact):
        value = float(compact.replace(",", ""))
        return str(int(value)) if value.is_integer() else repr(round(value, 9))
    text = _ARTICLES.sub(" ", text)
    text = text.translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


def parse_cot(text: str) -> dict[str, str]:
    answer = extract_final_answer(text)
    return {"reasoning": text, "answer": answer, "normalized": normalize_answer(answer)}


def chain_of_thought(model: BaseChatModel, system: str = COT_SYSTEM) -> Runnable:
    """Runnable {"question": str} -> {"reasoning", "answer", "normalized"}."""
    return (
        RunnableLambda(lambda inputs: cot_messages(inputs["question"], system))
        | model
        | RunnableLambda(lambda message: parse_cot(message_text(message)))
    ).with_config(run_name="chain_of_thought")
