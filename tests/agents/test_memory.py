from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from graphcraft.memory import ContextWindow, LongTermMemory, count_message_tokens, make_store
from graphcraft.testing import ScriptedChatModel


def conversation(turns: int, words: int = 30):
    messages = []
    for i in range(turns):
        messages.append(HumanMessage(f"question {i} " + "word " * words, id=f"h{i}"))
        messages.append(
            AIMessage(
                "", tool_calls=[{"name": "calculator", "args": {"expression": f"{i}+1"}, "id": f"c{i}"}], id=f"a{i}"
            )
        )
        messages.append(ToolMessage(str(i + 1), tool_call_id=f"c{i}", id=f"t{i}"))
        messages.append(AIMessage(f"answer {i} " + "word " * words, id=f"r{i}"))
    return messages


def test_token_counting_is_offline_and_monotonic():
    short, long = conversation(1), conversation(4)
    assert 0 < count_message_tokens(short) < count_message_tokens(long)


def test_split_never_separates_tool_calls_from_results():
    window = ContextWindow(max_tokens=200)
    older, recent = window.split(conversation(6))
    assert older and recent and isinstance(recent[0], HumanMessage)
    assert count_message_tokens(recent) <= window.keep_recent_tokens
    ids = {m.id for m in recent}
    for m in recent:
        if isinstance(m, ToolMessage):
            assert f"a{m.tool_call_id[1:]}" in ids


def test_compact_summarises_older_turns_and_removes_them():
    model = ScriptedChatModel(script=["Earlier: six arithmetic questions answered."])
    window = ContextWindow(max_tokens=200)
    messages = conversation(6)
    update = window.compact(model, messages, summary="")
    assert update["summary"].startswith("Earlier") and update["usage"]["llm_calls"] == 1
    removed = {m.id for m in update["messages"]}
    assert "h0" in removed and "h5" not in removed
    assert "question 0" in model.calls[0].last  # the old turns were what got summarised
    assert window.compact(model, conversation(1), summary="") == {}  # under budget: nothing to do


def test_fit_keeps_summary_and_stays_within_budget():
    window = ContextWindow(max_tokens=150)
    fitted = window.fit(conversation(6), summary="user asked arithmetic", system="be brief")
    assert fitted[0].content == "be brief" and "user asked arithmetic" in fitted[1].content
    assert count_message_tokens(fitted) <= 150 and isinstance(fitted[2], HumanMessage)
    huge = [HumanMessage("x " * 2000, id="only")]
    assert window.fit(huge)[-1].id == "only"  # the current turn is always sent


def test_long_term_memory_semantic_recall_and_dedupe(embeddings):
    memory = LongTermMemory(make_store(embeddings), user_id="u1")
    memory.add_fact("The user prefers metric units.")
    memory.add_fact("the user prefers   metric units.")
    memory.add_fact("The project codename is Falcon.")
    memory.add_episode("Convert 5 miles to km", "8.05 km")
    assert memory.count("facts") == 2
    found = memory.recall("Which unit system should I use?", k=2)
    assert found[0]["kind"] == "fact" and "metric" in found[0]["text"]
    assert LongTermMemory(memory.store, user_id="u2").recall("metric units") == []
