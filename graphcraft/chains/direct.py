"""Answers that need no retrieval: arithmetic by the safe calculator tool, or the model alone.

Shared by adaptive_rag ("direct answer") and router (tools / parametric knowledge). Parametric
answering has no faithful offline substitute: without a chat model it says so, it does not guess.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from graphcraft.chains.answer import Answer
from graphcraft.chains.question import arithmetic_expression
from graphcraft.models import invoke_llm, message_text

PARAMETRIC_PROMPT = """Answer the question from your own knowledge, briefly (one or two sentences).
If you do not know, reply exactly: I don't know.

Question: {question}
Answer:"""

NEEDS_MODEL = (
    "This question needs the model's own knowledge, and no chat model is configured: set GRAPHCRAFT_CHAT_MODEL "
    "(e.g. 'ollama:llama3.1') to answer it."
)


def calculate(question: str, expression: str | None = None) -> Answer | None:
    """The calculator's answer to an arithmetic question, or None if it holds no arithmetic."""
    from graphcraft.tools.calculator import calculator_tool

    expression = expression or arithmetic_expression(question)
    if not expression:
        return None
    value = calculator_tool().invoke({"expression": expression})
    ok = not str(value).startswith("calculator error")
    return Answer(
        text=f"{expression} = {value}" if ok else str(value), sources=[], strategy="calculator", abstained=not ok
    )


def parametric_answer(question: str, model: BaseChatModel | None) -> Answer:
    """The model's own answer (no sources), or an explicit 'needs a chat model' abstention offline."""
    if model is None:
        return Answer(text=NEEDS_MODEL, sources=[], strategy="needs_model", abstained=True)
    reply, usage = invoke_llm(model, PARAMETRIC_PROMPT.format(question=question))
    text = message_text(reply).strip() or "I don't know."
    return Answer(
        text=text, sources=[], strategy="parametric", usage=usage, abstained=text.lower().startswith("i don't know")
    )


def direct_answer(question: str, model: BaseChatModel | None) -> Answer:
    """Calculator when the question is arithmetic, else the model alone."""
    return calculate(question) or parametric_answer(question, model)
