"""A graph for the server test: plan_execute with a scripted chat model, served by `langgraph dev`.

LangGraph Server supplies the checkpointer (a graph it serves must not bring its own), so a served
graph can pause with `interrupt` and be resumed by a client with Command(resume=...).
"""

from __future__ import annotations

from graphcraft.graphs import plan_execute
from graphcraft.testing import ScriptCall, ScriptedChatModel


def respond(call: ScriptCall) -> str | dict:
    if call.schema == "Plan":
        return {"steps": [{"id": "s1", "description": "find owls"}, {"id": "s2", "description": "count owls"}]}
    if "Step results" in call.last:
        results = call.last.split("Step results:\n")[1].splitlines()
        return "Done: " + " | ".join(line.split(": ", 1)[1] for line in results)
    if "Your step: " in call.last:
        return "did " + call.last.split("Your step: ")[1].strip()
    return "analysis"


graph = plan_execute.build(ScriptedChatModel(script=respond))
