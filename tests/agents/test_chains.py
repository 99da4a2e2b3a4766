from graphcraft.chains.chain_of_thought import chain_of_thought, extract_final_answer, normalize_answer
from graphcraft.chains.few_shot import few_shot_chain, few_shot_prompt
from graphcraft.chains.role_prompts import ROLES, role_chain
from graphcraft.testing import ScriptedChatModel

EXAMPLES = [
    {"input": "What is 12 times 3?", "output": "36"},
    {"input": "Add 7 and 5", "output": "12"},
    {"input": "What is the capital of France?", "output": "Paris"},
    {"input": "Which city is Spain's capital?", "output": "Madrid"},
    {"input": "Translate 'cat' to German", "output": "Katze"},
]


def test_chain_of_thought_parses_final_answer():
    model = ScriptedChatModel(script=["First 2*3=6, then 6+1=7.\nAnswer: 7"])
    out = chain_of_thought(model).invoke({"question": "2*3+1?"})
    assert out["answer"] == "7" and "6+1" in out["reasoning"] and out["normalized"] == "7"
    assert "step by step" in model.calls[0].messages[0].content


def test_answer_extraction_and_normalisation():
    assert extract_final_answer("blah\nThe final answer is: 1,250.00") == "1,250.00"
    assert extract_final_answer("so \\boxed{x=3}") == "x=3"
    assert extract_final_answer("no marker\nlast line") == "last line"
    assert normalize_answer("1,250.00") == normalize_answer("1250") == "1250"
    assert normalize_answer("The Eiffel Tower.") == normalize_answer("eiffel tower") == "eiffel tower"
    assert normalize_answer("0.5") != normalize_answer("5")


def test_few_shot_selects_semantically_similar_examples(embeddings):
    prompt = few_shot_prompt(EXAMPLES, k=2, embeddings=embeddings)
    messages = prompt.format_messages(input="What is the capital of Italy?")
    shown = [m.content for m in messages[1:-1:2]]
    assert set(shown) == {"What is the capital of France?", "Which city is Spain's capital?"}
    arithmetic = [m.content for m in prompt.format_messages(input="Multiply 4 by 9")[1:-1:2]]
    assert "What is 12 times 3?" in arithmetic and "What is the capital of France?" not in arithmetic


def test_few_shot_chain_sends_examples_to_model(embeddings):
    model = ScriptedChatModel(script=["Rome"])
    assert few_shot_chain(model, EXAMPLES, k=2, embeddings=embeddings).invoke({"input": "Capital of Italy?"}) == "Rome"
    sent = [m.content for m in model.calls[0].messages]
    assert "Paris" in sent and "Katze" not in sent


def test_role_chain_sets_persona():
    model = ScriptedChatModel(script=["Looks fine except line 3."])
    assert role_chain(model, "critic").invoke({"input": "review this"}) == "Looks fine except line 3."
    assert model.calls[0].messages[0].content == ROLES["critic"]
    custom = ScriptedChatModel(script=["ok"])
    role_chain(custom, "marine biologist").invoke({"input": "hi"})
    assert custom.calls[0].messages[0].content == "You are an expert marine biologist."
