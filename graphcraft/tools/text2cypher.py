"""Text2Cypher: a question in natural language -> a read-only Cypher query over the graph -> rows.

The chat model sees the graph's schema (labels, properties, relationship patterns, the
values of entity and relation types) and writes one query. Before anything runs, the query
goes through :func:`graphcraft.guards.cypher.validate_read_only`: write clauses, procedures
that are not read-only, several statements, comment and unicode tricks are refused; string
literals become parameters; a row limit and a variable-length bound are enforced; nesting,
and the size and work of every value, are bounded so that a query cannot stall the parser or
exhaust the server's memory. The store then runs it on its read-only path with a timeout,
under the database's own per-query memory cap (see graphcraft.stores.falkordb_server). A
refused or failing query is sent back to the model with the reason (always one line), at
most ``max_repairs`` times; after that the tool gives up and says why. When the database
itself is unreachable the tool stops at once. There is no offline strategy: writing Cypher
from a question needs a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import StructuredTool, ToolException

from graphcraft.errors import NoChatModelError, StoreError
from graphcraft.guards.cypher import UnsafeCypherError, validate_read_only
from graphcraft.models import invoke_llm, message_text
from graphcraft.runtime.accounting import Usage, add_usage, empty_usage
from graphcraft.stores.graph import GraphQueryError

SYSTEM_PROMPT = """You translate questions into one read-only Cypher query for this graph.
{schema}

Rules: only MATCH / OPTIONAL MATCH / WITH / WHERE / RETURN / ORDER BY / LIMIT / UNWIND; never
CREATE, MERGE, SET, DELETE, REMOVE, DROP, LOAD CSV or CALL of procedures other than db.labels().
Entity names are in Entity.name and their other spellings in Entity.aliases. Relation kinds
are in the `type` property of RELATED edges. Reply with the query only, no explanation."""

REPAIR_PROMPT = "That query could not be used: {error}\nWrite a corrected query (the query only)."

_FENCE = re.compile(r"```(?:cypher)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass
class Text2CypherResult:
    question: str
    cypher: str = ""  # the query as run (literals as parameters, LIMIT enforced)
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    ok: bool = False
    usage: Usage = field(default_factory=empty_usage)

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "cypher": self.cypher,
            "params": self.params,
            "rows": self.rows,
            "attempts": self.attempts,
            "errors": self.errors,
            "ok": self.ok,
            "llm_calls": int(self.usage.get("llm_calls", 0)),
        }


def extract_query(reply: str) -> str:
    """The Cypher in a model reply (fenced or bare)."""
    fenced = _FENCE.search(reply)
    text = fenced.group(1) if fenced else reply
    return text.strip().strip("`").strip()


def text2cypher(
    question: str,
    graph_store: Any,
    model: BaseChatModel | None,
    *,
    max_repairs: int = 2,
    limit: int = 50,
    timeout_ms: int = 5000,
    max_hops: int = 4,
    schema: str | None = None,
) -> Text2CypherResult:
    """Ask the model for Cypher, validate, run read-only; repair at most ``max_repairs`` times."""
    if model is None:
        raise NoChatModelError("Text2Cypher")
    result = Text2CypherResult(question=question)
    messages: list[BaseMessage] = [
        SystemMessage(SYSTEM_PROMPT.format(schema=schema if schema is not None else graph_store.schema())),
        HumanMessage(question),
    ]
    for attempt in range(1 + max(0, max_repairs)):
        result.attempts = attempt + 1
        reply, usage = invoke_llm(model, messages)
        result.usage = add_usage(result.usage, usage)
        query = extract_query(message_text(reply))
        try:
            safe = validate_read_only(query, limit=limit, max_hops=max_hops, timeout_ms=timeout_ms)
            rows = graph_store.query(
                safe.query, safe.params, read_only=True, timeout_ms=safe.timeout_ms, limit=safe.limit
            )
        except (UnsafeCypherError, GraphQueryError) as exc:
            error = _one_line(exc.reason if isinstance(exc, UnsafeCypherError) else str(exc))
            result.errors.append(error)
            messages += [AIMessage(query or "(empty)"), HumanMessage(REPAIR_PROMPT.format(error=error))]
            continue
        except StoreError as exc:  # the database is unreachable: another query will not help
            result.errors.append(_one_line(exc))
            return result
        result.cypher, result.params, result.rows, result.ok = safe.query, safe.params, rows, True
        return result
    return result


def _one_line(text: object, limit: int = 300) -> str:
    """A reason on one line, short enough for a repair prompt and a tool message."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def make_text2cypher_tool(
    graph_store: Any, model: BaseChatModel, *, max_repairs: int = 2, limit: int = 50, timeout_ms: int = 5000
) -> StructuredTool:
    """A LangChain tool answering questions about the entity graph with validated Cypher."""

    def query_graph(question: str) -> dict[str, Any]:
        """Answer a question about entities and their relations by querying the knowledge graph."""
        out = text2cypher(question, graph_store, model, max_repairs=max_repairs, limit=limit, timeout_ms=timeout_ms)
        if not out.ok:
            raise ToolException(
                f"no valid Cypher after {out.attempts} attempts: {out.errors[-1] if out.errors else 'unknown'}"
            )
        return {"cypher": out.cypher, "rows": out.rows}

    return StructuredTool.from_function(query_graph, name="query_graph", handle_tool_error=True)
