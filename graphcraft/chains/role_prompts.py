"""Role prompting: a system persona chosen by name, as a reusable chain.

Roles change what the model attends to (an auditor looks for errors, a teacher for clarity);
they are plain data so callers can add their own.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

ROLES: dict[str, str] = {
    "analyst": (
        "You are a rigorous analyst. Separate facts from assumptions, quantify where possible, and state uncertainty."
    ),
    "engineer": (
        "You are a senior software engineer. Prefer simple, correct, maintainable solutions and mention trade-offs."
    ),
    "teacher": "You are a patient teacher. Explain step by step with a small example, avoiding jargon.",
    "critic": "You are a demanding reviewer. Find errors, gaps and unsupported claims; be specific and constructive.",
    "planner": "You are an experienced project planner. Break goals into concrete steps with owners, order and checks.",
    "summarizer": "You write faithful, concise summaries that keep every number, name and decision.",
}


def role_system_prompt(role: str, roles: dict[str, str] | None = None) -> str:
    """The persona for `role`: a known name, a full persona sentence used verbatim, or "You are an expert <role>."."""
    table = roles or ROLES
    if role.lower() in table:
        return table[role.lower()]
    return role if role.rstrip().endswith(".") else f"You are an expert {role}."


def role_prompt(role: str, roles: dict[str, str] | None = None) -> ChatPromptTemplate:
    """Prompt with the persona as system message and `{input}` as the human turn."""
    return ChatPromptTemplate.from_messages([("system", role_system_prompt(role, roles)), ("human", "{input}")])


def role_chain(model: BaseChatModel, role: str, roles: dict[str, str] | None = None) -> Runnable:
    """Runnable {"input": str} -> str, answering in the given role."""
    return (role_prompt(role, roles) | model | StrOutputParser()).with_config(run_name=f"role:{role}")
