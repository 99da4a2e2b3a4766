"""Multi-hop on technical text: bridges that are function names, options, file names and amounts.

Real MiniLM embeddings, FAISS, BM25 and spaCy on a small corpus written here (a fictional
storage tool, so no answer can come from anywhere else); only the chat model is scripted.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graphcraft.chains.decompose import bridge_answer, decompose, decompose_rules, technical_spans
from graphcraft.config import get_settings
from graphcraft.graphs.multihop import build
from graphcraft.testing import ScriptCall, ScriptedChatModel
from tests.hierarchy_multihop.corpus import write

TOOL_DOCS = {
    "archive_command.md": """# The archive command

The archive command writes a snapshot of every open volume into one archive file.
It relies on the helper function pack_blocks() to compress each block before the block is written.
Archives are named after the volume and the date of the snapshot.
""",
    "block_packing.md": """# Block packing

pack_blocks() compresses a list of blocks with the zstd codec.
pack_blocks() keeps at most 4096 compressed blocks in its cache and drops the oldest one when the cache is full.
Blocks larger than one megabyte are split before packing.
""",
    "access_rules.md": """# Access rules

The quill server reads its access rules from the file gate_rules.conf in the configuration directory.
Each line of that file names a client address and the volumes the client may read.
""",
    "reloading.md": """# Reloading configuration

Entries in gate_rules.conf are reloaded every 30 seconds, so a changed rule takes effect without a restart.
Other configuration files are read only when the server starts.
""",
    "daemon_options.md": """# Daemon options

Start the replication daemon with the --squeeze option to enable compression of replicated blocks.
The --verbose option prints the name of every replicated block.
""",
    "worker_memory.md": """# Worker memory

Each replication worker started with --squeeze needs 8 MiB of memory for its compression window.
Workers without compression need less than one MiB.
""",
    "overview.md": """# Quill overview

Quill is a storage tool that keeps volumes of blocks on local disks and replicates them to other machines.
Its server answers clients, its daemon replicates volumes, and its command line manages archives.
""",
}

CITATION = re.compile(r"\[(\d+)\]")


@pytest.fixture(scope="module")
def tool_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from graphcraft.api import ingest

    root = tmp_path_factory.mktemp("tool")
    report = ingest([write(root / "docs", TOOL_DOCS)], store=root / "store")
    assert not report["failed"]
    return root / "store"


def _run(store: Path, question: str, model=None) -> dict:  # type: ignore[no-untyped-def]
    return build(model=model, settings=get_settings(store=store)).invoke({"question": question})


def _assert_citations_match_sources(state: dict) -> None:
    """Citation numbers are 1..n, every source is cited in the answer and every citation is a source."""
    numbers = [s["citation"] for s in state["sources"]]
    assert numbers == list(range(1, len(numbers) + 1))
    assert {int(n) for n in CITATION.findall(state["answer"])} == set(numbers)


# ------------------------------------------------------------------------------ bridges on technical text


@pytest.mark.parametrize(
    ("question", "answer", "bridge"),
    [
        (
            "Which function does the archive command use?",
            "The archive command writes a snapshot. [1] "
            "It relies on the helper function pack_blocks() to compress each block. [2]",
            "pack_blocks()",
        ),
        (
            "Which option enables compression of replicated blocks?",
            "Start the replication daemon with the --squeeze option to enable compression of replicated blocks. [1]",
            "--squeeze",
        ),
        (
            "Which file is the one where the quill server reads its access rules?",
            "The quill server reads its access rules from the file gate_rules.conf in the configuration directory. [1]",
            "gate_rules.conf",
        ),
        (
            "Which setting sets the memory for shared buffers?",
            "shared_buffers (integer): Sets the amount of memory the database server uses "
            "for shared memory buffers. [1]",
            "shared_buffers",
        ),
        (
            "How much memory does a worker need for its window?",
            "Each replication worker needs 8 MiB of memory for its compression window. [1]",
            "8 MiB",
        ),
        (
            "Which encoding does the reader expect?",
            "The reader expects text encoded as “utf-16-le” unless told otherwise. [1]",
            "utf-16-le",
        ),
        (
            "Which call copies the database in the tutorial?",
            ">>> shutil.copyfile('data.db', 'archive.db') [1]",
            "shutil.copyfile",
        ),
        (
            "What is the default open flag of shelve.open?",
            "shelve.open(filename, flag='c', protocol=None) The optional flag parameter "
            "has the same interpretation as the flag parameter of dbm.open(). [1]",
            "c",
        ),
    ],
)
def test_bridge_is_the_technical_name_the_sub_question_asks_for(question: str, answer: str, bridge: str) -> None:
    assert bridge_answer(question, answer, max_words=0) == bridge


def test_bridge_never_passes_on_a_name_the_question_already_gives() -> None:
    answer = "Identical to copy() except that copy2() also attempts to preserve file metadata. [1]"
    assert bridge_answer("Which function is like copy() but keeps metadata?", answer, max_words=0) == "copy2()"
    assert bridge_answer("Which function is like copy2() but keeps metadata?", answer, max_words=0) == "copy()"
    assert bridge_answer("Which function, copy() or copy2(), keeps metadata?", answer, max_words=0) == ""


def test_technical_spans_do_not_overlap_and_keep_the_longest_name() -> None:
    spans = technical_spans(
        "Edit pg_hba.conf under /etc/quill/main, run os.path.join(a, b) with -D or --dry-run=yes; 128kB."
    )
    assert [(s.text, s.label) for s in spans] == [
        ("pg_hba.conf", "FILE"),
        ("/etc/quill/main", "FILE"),
        ("os.path.join", "CODE"),
        ("-D", "OPTION"),
        ("--dry-run=yes", "OPTION"),
        ("128kB", "AMOUNT"),
    ]
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))


# ------------------------------------------------------------------------------ decomposition as users write


def test_scene_then_question_about_that_thing_is_two_hops() -> None:
    subs, form = decompose_rules(
        "The archive command relies on a helper function to compress blocks. "
        "How many compressed blocks does that function keep in its cache?"
    )
    assert form == "context_reference" and [s.depends_on for s in subs] == [[], ["q1"]]
    assert subs[0].question == "The archive command relies on which helper function to compress blocks?"
    assert subs[1].question == "How many compressed blocks does the function {q1} keep in its cache?"
    # the statement never names the noun: the question for it is appended to the statement
    subs, form = decompose_rules("The daemon replicates blocks in rounds. Which setting limits that per-round cap?")
    assert form == "context_reference" and subs[0].question.endswith(": which per-round cap?")


def test_attribute_of_a_name_is_asked_first_when_the_question_is_about_it() -> None:
    subs, form = decompose_rules("What does the default open flag of shelve.open mean for the database file?")
    assert form == "attribute"
    assert [s.question for s in subs] == [
        "What is the default open flag of shelve.open?",
        "What does the default open flag {q1} mean for the database file?",
    ]
    subs, form = decompose_rules("Which exceptions can Quill Server's default handler raise?")
    assert form == "attribute" and subs[0].question == "What is Quill Server's default handler?"
    for single in ("What is the default open flag of shelve.open?", "Who designed the weir?"):
        assert decompose_rules(single)[1] == "single"


def test_questions_that_must_stay_one_hop() -> None:
    # the wh-word after a leading phrase opens the question, it is not a relative clause
    assert (
        decompose_rules("On Unix, which environment variable decides where netrc looks for its default file?")[1]
        == "single"
    )
    # a second clause that refers back ("its") cannot run on its own
    assert decompose_rules("Which setting caps the writes, and what is its default?")[1] == "single"
    plan = decompose(
        "The archive command relies on a helper function. How many blocks does that function cache?", max_hops=1
    )
    assert len(plan.hops) == 1 and plan.strategy == "rules:single"


# ------------------------------------------------------------------------------ the graph, offline


@pytest.mark.parametrize(
    ("question", "form", "bridge", "fact", "files"),
    [
        (
            "The archive command relies on a helper function to compress blocks. "
            "How many compressed blocks does that function keep in its cache?",
            "context_reference",
            "pack_blocks()",
            "4096",
            {"archive_command.md", "block_packing.md"},
        ),
        (
            "How often are the entries reloaded in the file where the quill server reads its access rules?",
            "relative_clause",
            "gate_rules.conf",
            "30 seconds",
            {"access_rules.md", "reloading.md"},
        ),
        (
            "How much memory does each replication worker need when started with the option "
            "that enables compression of replicated blocks?",
            "relative_clause",
            "--squeeze",
            "8 MiB",
            {"daemon_options.md", "worker_memory.md"},
        ),
    ],
)
def test_offline_second_hop_names_the_first_hops_answer_and_both_facts_are_cited(
    tool_store: Path, question: str, form: str, bridge: str, fact: str, files: set[str]
) -> None:
    state = _run(tool_store, question)
    first, second = state["trace"]["hops"]
    assert state["trace"]["decomposition"]["strategy"] == f"rules:{form}"
    assert first["bridge"] == bridge and bridge in second["question"]
    assert (
        not first["context_query"] and second["context_query"] == question
    )  # the final hop also searches as the user asked
    assert fact in second["answer"] and fact in state["answer"].split("How this was found")[0]
    assert files <= {Path(s["source"]).name for s in state["sources"]}
    for hop, name in ((first, bridge), (second, fact)):  # each hop's supporting sentence and its chunk are kept
        cited = {int(n) for n in CITATION.findall(hop["answer"])}
        assert cited and any(name in s["text"] for s in state["sources"] if s["citation"] in cited)
        assert hop["answer"] in state["answer"]
    _assert_citations_match_sources(state)
    assert state["trace"]["llm_calls"] == 0


# ------------------------------------------------------------------------------ the graph, with a model

KNOWLEDGE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)


def tool_reader(call: ScriptCall, plan: dict, compose: str | None = None) -> object:
    """Decomposes with `plan`; answers a hop only from a knowledge line that holds what it asks for."""
    if call.schema == "Decomposition":
        return plan
    if "using ONLY the numbered knowledge" in call.text:
        question = call.text.rsplit("Question:", 1)[1].split("\n")[0]
        for number, line in KNOWLEDGE.findall(call.text):
            if "helper function" in question:
                found = re.search(r"helper function (\w+\(\))", line)
                if found:
                    return f"{found.group(1)} [{number}]"
            subject = re.search(r"does (\S+) keep", question)
            found = re.search(r"keeps at most (\d+)", line)
            if subject and found and subject.group(1) in line:
                return f"{found.group(1)} blocks [{number}]"
        return "Not found in the sources."
    if "findings of its sub-questions" in call.text:
        findings = call.text.split("Findings:")[1].split("Question:")[0].strip().splitlines()
        return compose or findings[-1].split("-> ")[-1]
    raise AssertionError(f"unexpected prompt: {call.text[:200]}")


PLAN = {
    "sub_questions": [
        {
            "id": "q1",
            "question": "Which helper function does the archive command rely on to compress blocks?",
            "depends_on": [],
        },
        {"id": "q2", "question": "How many compressed blocks does {q1} keep in its cache?", "depends_on": ["q1"]},
    ]
}
QUESTION = "How many compressed blocks can the archive command's compression helper keep cached?"


def test_model_path_passes_the_first_answer_into_the_second_hop_and_cites_both(tool_store: Path) -> None:
    model = ScriptedChatModel(script=lambda call: tool_reader(call, PLAN))
    state = _run(tool_store, QUESTION, model)
    first, second = state["trace"]["hops"]
    assert first["bridge"] == "pack_blocks()"
    assert second["question"] == "How many compressed blocks does pack_blocks() keep in its cache?"
    hop2_prompt = next(
        c.text for c in model.calls if "Question: How many compressed blocks does pack_blocks()" in c.text
    )
    assert "keeps at most 4096 compressed blocks" in hop2_prompt  # retrieval ran on the substituted question
    assert state["answer"].startswith("4096 blocks") and state["trace"]["compose_strategy"] == "llm"
    names = {Path(s["source"]).name: s["citation"] for s in state["sources"]}
    assert {"archive_command.md", "block_packing.md"} <= set(names)  # hop 1's finding is listed with its citation
    _assert_citations_match_sources(state)
    assert state["trace"]["llm_calls"] == model.call_count == 4


def test_model_citations_outside_the_sources_are_dropped_and_the_rest_renumbered(tool_store: Path) -> None:
    model = ScriptedChatModel(script=lambda call: tool_reader(call, PLAN, compose="It keeps 4096 blocks [2] [9]."))
    state = _run(tool_store, QUESTION, model)
    assert "[9]" not in state["answer"]
    _assert_citations_match_sources(state)
    assert state["answer"].startswith("It keeps 4096 blocks [1].")
    assert "4096" in state["sources"][0]["text"]
