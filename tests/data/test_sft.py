"""Fine-tuning sources: the three JSONL forms, languages as tasks, the stdlib instruction set,
one loader for all; every kind of malformed record is an error naming file, line and field."""

import inspect
import json
import shutil
from pathlib import Path

import pytest

from scratchllm.data import languages
from scratchllm.data.chat import Message
from scratchllm.data.instructions import extract_instructions, stdlib_instructions, summary
from scratchllm.data.sft import (
    INSTRUCTIONS,
    Example,
    in_held_out,
    language_examples,
    load_examples,
    read_examples,
    split_answer,
    task_families,
)


def write_jsonl(path: Path, records, raw_lines=()) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def user_assistant(prompt, completion):
    return (Message("user", prompt), Message("assistant", completion))


# ---- the three forms ----------------------------------------------------------------------


def test_openai_messages(tmp_path):
    record = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello.", "weight": 0},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Again"}, {"type": "text", "text": "!"}],
            },
            {"role": "assistant", "content": "Hello again."},
        ],
        "id": "ignored metadata",
    }
    (ex,) = read_examples(write_jsonl(tmp_path / "chat.jsonl", [record]))
    assert ex.source == f"{tmp_path / 'chat.jsonl'}:1"
    assert ex.messages[0] == Message("system", "Be brief.")
    assert ex.messages[2] == Message("assistant", "Hello.", weight=0)
    assert ex.messages[3].content == "Again!"
    assert ex.completion == "Hello again." and len(ex.prompt) == 4


def test_alpaca_with_and_without_input(tmp_path):
    records = [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hi.", "input": "", "output": "Hi!"},
        {"instruction": "Say bye.", "output": "Bye!"},
        {"instruction": "Say yes.", "input": None, "output": "Yes."},
    ]
    examples = read_examples(write_jsonl(tmp_path / "a.jsonl", records))
    assert [e.messages for e in examples] == [
        user_assistant("Add the numbers.\n\n2 and 3", "5"),
        user_assistant("Say hi.", "Hi!"),
        user_assistant("Say bye.", "Bye!"),
        user_assistant("Say yes.", "Yes."),
    ]


def test_prompt_completion_and_a_json_array_file(tmp_path):
    records = [{"prompt": "37+45=", "completion": "82\n"}, {"prompt": "", "completion": "x"}]
    path = tmp_path / "pc.json"
    path.write_text(json.dumps(records), encoding="utf-8")  # Alpaca's own .json is an array
    examples = read_examples(path)
    assert [e.messages for e in examples] == [
        user_assistant("37+45=", "82\n"),
        user_assistant("", "x"),
    ]
    assert examples[1].source == f"{path} item 1"


def test_blank_lines_are_not_examples_and_line_numbers_stay_true(tmp_path):
    path = tmp_path / "gaps.jsonl"
    path.write_text(
        '\n{"prompt": "a", "completion": "b"}\n   \n{"prompt": "c", "completion": "d"}\n',
        encoding="utf-8",
    )
    assert [e.source.rsplit(":", 1)[1] for e in read_examples(path)] == ["2", "4"]


# ---- every malformation names file, line and field -----------------------------------------

GOOD = {"prompt": "p", "completion": "c"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r":2: not valid JSON"),
        ("[1, 2]", r":2: expected a JSON object, got a JSON array"),
        ('"text"', r":2: expected a JSON object, got a JSON string"),
        ('{"text": "x"}', r":2: no 'messages', 'instruction'/'output' or 'prompt'/'completion'"),
        ('{"prompt": "p"}', r":2: field 'completion' is missing"),
        (
            '{"prompt": 3, "completion": "c"}',
            r":2: field 'prompt' must be a string, got a JSON number",
        ),
        ('{"prompt": "p", "completion": ""}', r":2: field 'completion' is empty"),
        ('{"prompt": "p", "completion": null}', r":2: field 'completion' must be a string"),
        (
            '{"instruction": "i", "output": "o"}',
            r":2: .*Alpaca .* form but .*:1 is prompt/completion",
        ),
    ],
)
def test_malformed_prompt_completion_lines(tmp_path, line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD], raw_lines=[line])
    with pytest.raises(ValueError, match=message) as err:
        read_examples(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"instruction": "i"}, r"field 'output' is missing"),
        ({"output": "o"}, r"field 'instruction' is missing"),
        ({"instruction": " ", "output": "o"}, r"field 'instruction' is empty"),
        ({"instruction": "i", "input": 5, "output": "o"}, r"field 'input' must be a string"),
        (
            {"instruction": "i", "output": ["o"]},
            r"field 'output' must be a string, got a JSON array",
        ),
    ],
)
def test_malformed_alpaca_records(tmp_path, record, message):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [record])
    with pytest.raises(ValueError, match=f"{path}:1: {message}"):
        read_examples(path)


def chat(*messages):
    return {"messages": list(messages)}


U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "hello"}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"messages": "hi"}, r"field 'messages' must be a list of messages, got a JSON string"),
        (chat(), r"field 'messages': a conversation needs at least one message"),
        (chat(U), r"field 'messages' has no assistant message to learn"),
        (chat(U, {**A, "weight": 0}), r"has no assistant message to learn"),
        (chat(U, {"role": "assistant", "content": ""}), r"message 1 \(assistant\) is empty"),
        (chat({"role": "bot", "content": "x"}, A), r"field 'messages': message 0: 'role' is 'bot'"),
        (chat({"role": "user"}, A), r"message 0 has no 'content'"),
        (chat(U, {**A, "tool_calls": []}), r"message 1 has field 'tool_calls'"),
        (chat(U, {**A, "content": 7}), r"message 1 \(assistant\): 'content' must be a string"),
        (
            chat({**U, "content": [{"type": "image_url"}]}, A),
            r"messages\[0\].content\[0\] is a 'image_url' part",
        ),
        (
            chat({**U, "content": [{"type": "text", "text": 1}]}, A),
            r"field 'text' must be a string",
        ),
        (chat("hi", A), r"message 0 is a str"),
    ],
)
def test_malformed_chat_records(tmp_path, record, message):
    path = write_jsonl(tmp_path / "chat.jsonl", [chat(U, A), record])
    with pytest.raises(ValueError, match=f"{path}:2: .*{message}"):
        read_examples(path)


def test_bad_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{empty} holds no examples"):
        read_examples(empty)
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(
        b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n'
    )
    with pytest.raises(ValueError, match=f"{latin}:2: not UTF-8 text"):
        read_examples(latin)
    array = tmp_path / "broken.json"
    array.write_text('[{"prompt": "a", "completion": "b"},\n {"prompt": ', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{array}:2: not valid JSON"):
        read_examples(array)
    items = tmp_path / "items.json"
    items.write_text(json.dumps([GOOD, {"prompt": "p"}]), encoding="utf-8")
    with pytest.raises(ValueError, match=f"{items} item 1: field 'completion' is missing"):
        read_examples(items)


def test_a_bom_is_not_an_error(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert read_examples(path)[0].completion == "c"


# ---- languages as tasks ------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["addition:digits=3", "addition:digits=2,reverse=true", "copy:length=5"]
)
def test_language_tasks_split_at_the_answer(spec):
    lang = languages.get(spec)
    for ex in language_examples(spec, 50, seed=1):
        (user,) = ex.prompt
        sample = user.content + ex.completion
        assert lang.verify(sample).valid
        mask = lang.answer_mask(sample)
        assert mask == [False] * len(user.content) + [True] * len(ex.completion)
        assert ex.completion.endswith(lang.END)


def test_every_family_is_a_task_or_a_clear_error():
    assert task_families() == ["addition", "copy"]
    for name in languages.FAMILIES:
        if name in task_families():
            assert len(language_examples(name, 3)) == 3
        else:
            with pytest.raises(ValueError, match=f"language '{name}' has no answer to complete"):
                language_examples(name, 3)


def test_split_answer_refuses_a_sample_without_an_answer():
    with pytest.raises(ValueError, match="not a question followed by its answer"):
        split_answer(languages.get("markov"), "abc\n")


def test_held_out_prompts_never_appear_in_training():
    train = language_examples("addition:digits=2", 3000, seed=0)
    test = language_examples("addition:digits=2", 300, seed=5, split="test")
    train_prompts = {e.prompt[0].content for e in train}
    test_prompts = {e.prompt[0].content for e in test}
    assert train_prompts.isdisjoint(test_prompts)
    assert all(in_held_out(p) for p in test_prompts)
    everything = language_examples("addition:digits=2", 3000, seed=0, split="all")
    share = sum(in_held_out(e.prompt[0].content) for e in everything) / len(everything)
    assert 0.07 < share < 0.13  # HELD_OUT = 0.1 of the prompts


def test_same_seed_same_examples():
    a, b = (language_examples("copy:length=6", 20, seed=3) for _ in range(2))
    assert a == b and a != language_examples("copy:length=6", 20, seed=4)


def test_a_split_without_prompts_is_an_error_not_a_hang():
    # copy:length=1,alphabet=2 has two prompts, "a|" and "b|"; neither hashes into test.
    with pytest.raises(ValueError, match="too few distinct prompts"):
        language_examples("copy:length=1,alphabet=2", 5, split="test")


# ---- the stdlib instruction set -------------------------------------------------------------


@pytest.fixture(scope="module")
def json_only_stdlib(tmp_path_factory):
    """A standard library holding only the json package: quick to extract."""
    import json as json_module

    root = tmp_path_factory.mktemp("stdlib")
    shutil.copytree(Path(json_module.__file__).parent, root / "json")
    return root


def test_instructions_are_the_docstring_summaries(json_only_stdlib):
    pairs = extract_instructions(json_only_stdlib)
    assert pairs["json.dumps"] == (
        "What does json.dumps do?",
        summary(inspect.getdoc(json.dumps)),  # the runtime's own docstring
    )
    assert pairs["json.dumps"][1] == "Serialize ``obj`` to a JSON formatted ``str``."
    assert pairs["json.decoder.JSONDecoder"][0] == "What is json.decoder.JSONDecoder?"
    assert pairs["json"][0] == "What is the json module for?"
    assert list(pairs) == sorted(pairs)
    assert not [n for n in pairs if any(p.startswith("_") for p in n.split("."))]


def test_instructions_are_cached_and_stable(json_only_stdlib, tmp_path):
    first = stdlib_instructions(tmp_path, stdlib_dir=json_only_stdlib)
    assert list(tmp_path.glob("stdlib-instructions-*.json"))
    assert stdlib_instructions(tmp_path, stdlib_dir=json_only_stdlib) == first
    for cached in tmp_path.glob("stdlib-instructions-*.json"):
        cached.write_text("{broken", encoding="utf-8")  # a damaged cache is rebuilt
    assert stdlib_instructions(tmp_path, stdlib_dir=json_only_stdlib) == first


@pytest.mark.slow
def test_the_whole_standard_library(tmp_path):
    # Parsing every module takes a few seconds (then it is cached).
    examples = load_examples(INSTRUCTIONS, split="all", cache_dir=tmp_path)
    assert len(examples) > 1000  # about 4,800 on CPython 3.11
    by_question = {e.prompt[0].content: e.completion for e in examples}
    assert by_question["What does json.dumps do?"].startswith("Serialize ``obj``")
    train = load_examples(INSTRUCTIONS, cache_dir=tmp_path)
    test = load_examples(INSTRUCTIONS, split="test", cache_dir=tmp_path)
    assert len(train) + len(test) == len(examples)
    assert {e.prompt[0].content for e in train}.isdisjoint(e.prompt[0].content for e in test)
    first = load_examples(INSTRUCTIONS, n=5, seed=1, cache_dir=tmp_path)
    assert first == load_examples(INSTRUCTIONS, seed=1, cache_dir=tmp_path)[:5]
    assert first != train[:5]  # another seed, another order


# ---- the one loader ------------------------------------------------------------------------


def test_load_examples_dispatches(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, GOOD])
    assert load_examples(path) == read_examples(path)
    assert load_examples(str(path), n=1) == read_examples(path)[:1]
    assert load_examples(path, split="all") == read_examples(path)
    assert len(load_examples("addition:digits=2")) == 10_000
    assert load_examples("copy:length=3", n=7, seed=2) == language_examples("copy:length=3", 7, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "nope.jsonl"}, "is not a file, 'stdlib-instructions' or a language"),
        ({"source": "markov:order=2"}, "has no answer to complete"),
        ({"source": "FILE", "split": "test"}, "a file has no held-out split"),
        ({"source": "FILE", "n": 3}, "has 2 examples, fewer than the 3 asked for"),
        ({"source": "FILE", "n": 0}, "n .* must be a positive integer"),
        ({"source": "FILE", "split": "dev"}, "split must be one of"),
        ({"source": "DIR"}, "is a directory"),
    ],
)
def test_load_examples_errors(tmp_path, kwargs, message):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, GOOD])
    kwargs = dict(kwargs)
    kwargs["source"] = {"FILE": str(path), "DIR": str(tmp_path)}.get(
        kwargs["source"], kwargs["source"]
    )
    with pytest.raises(ValueError, match=message):
        load_examples(**kwargs)


def test_example_views():
    ex = Example.from_pair("q?", "a.", "here", system="Be brief.")
    assert [m.role for m in ex.messages] == ["system", "user", "assistant"]
    assert ex.prompt == (Message("system", "Be brief."), Message("user", "q?"))
    assert ex.completion == "a."


def test_docstring_examples_run():
    import doctest

    from scratchllm.data import instructions, sft

    for module in (sft, instructions):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0
