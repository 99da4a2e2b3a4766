"""Few-shot prompting with dynamic example selection.

The examples most similar to the input (by the project's embeddings, in a FAISS vector store)
are put in the prompt as previous turns, so a large example bank costs only k examples per
call. Built on LangChain's SemanticSimilarityExampleSelector and FewShotChatMessagePromptTemplate.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.embeddings import Embeddings
from langchain_core.example_selectors import SemanticSimilarityExampleSelector
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, FewShotChatMessagePromptTemplate
from langchain_core.runnables import Runnable

from graphcraft.models import get_embeddings


def example_selector(
    examples: Sequence[dict[str, str]], k: int = 3, embeddings: Embeddings | None = None, input_key: str = "input"
) -> SemanticSimilarityExampleSelector:
    """Selects the k examples whose `input_key` is closest in meaning to the new input."""
    from langchain_community.vectorstores import FAISS

    return SemanticSimilarityExampleSelector.from_examples(
        list(examples), embeddings or get_embeddings(), FAISS, k=k, input_keys=[input_key]
    )


def few_shot_prompt(
    examples: Sequence[dict[str, str]],
    k: int = 3,
    embeddings: Embeddings | None = None,
    system: str = "Answer in the same style as the examples.",
) -> ChatPromptTemplate:
    """A chat prompt: system, k selected {input, output} examples as turns, then `{input}`."""
    shots = FewShotChatMessagePromptTemplate(
        example_selector=example_selector(examples, k, embeddings),
        example_prompt=ChatPromptTemplate.from_messages([("human", "{input}"), ("ai", "{output}")]),
        input_variables=["input"],
    )
    return ChatPromptTemplate.from_messages([("system", system), shots, ("human", "{input}")])


def few_shot_chain(
    model: BaseChatModel,
    examples: Sequence[dict[str, str]],
    k: int = 3,
    embeddings: Embeddings | None = None,
    system: str = "Answer in the same style as the examples.",
) -> Runnable:
    """Runnable {"input": str} -> str with the k most similar examples as demonstrations."""
    return (few_shot_prompt(examples, k, embeddings, system) | model | StrOutputParser()).with_config(
        run_name="few_shot"
    )
