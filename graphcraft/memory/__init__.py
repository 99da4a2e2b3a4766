"""Agent memory.

- short-term: LangGraph checkpointer threads (SQLite by default) so a conversation resumes
  (`checkpoints.sqlite_checkpointer`);
- context window: offline token counting, trimming and a running summary of older turns
  (`context.ContextWindow`);
- long-term: a LangGraph Store with semantic search over facts and episodes, written and
  recalled by memory nodes (`long_term`).
"""

from graphcraft.memory.checkpoints import sqlite_checkpointer
from graphcraft.memory.context import ContextWindow, count_message_tokens
from graphcraft.memory.long_term import LongTermMemory, make_store

__all__ = ["sqlite_checkpointer", "ContextWindow", "count_message_tokens", "LongTermMemory", "make_store"]
