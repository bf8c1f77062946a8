"""Fine-tuning data: every source becomes the same ``Example`` (a conversation to learn).

``load_examples(source)`` takes what a user types after ``--data``:

- a ``.jsonl`` file (or a ``.json`` file holding one array) in one of three forms, one
  example per line:

  - OpenAI chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}``
    (an assistant message may carry ``"weight": 0`` to be shown but not learned; content
    may also be a list of ``{"type": "text", "text": ...}`` parts);
  - Alpaca: ``{"instruction": ..., "input": ..., "output": ...}`` (``input`` optional): the
    user says the instruction, then a blank line and the input when there is one;
  - prompt/completion: ``{"prompt": ..., "completion": ...}``: the user says the prompt;

- ``"stdlib-instructions"``: questions about the standard library answered by its
  docstrings (``instructions.py``), no download;
- a language spec with an answer (``"addition:digits=3"``, ``"copy:length=8"``): prompt =
  the sample before its answer, completion = the answer, from the language's
  ``answer_mask`` (``"37+45="`` -> ``"82\\n"``).

Every malformed record is an error that names the file, the line (or array item) and the
field; nothing is skipped but blank lines. Keys outside the form at the top level (an
``id``, ``metadata``) are ignored; inside a message an unknown key is an error, because a
``name`` or a tool call would change what the conversation means.

**Held-out split.** Generated sources (languages, instructions) are split by a hash of
the prompt: ``split="test"`` gives the prompts in the held-out tenth (``HELD_OUT``),
``"train"`` the rest, ``"all"`` both. Train and test never share a prompt, whatever ``n``
and ``seed`` are, so a task evaluation is never scored on a question it trained on. A
file is used whole (its ``"train"`` and ``"all"`` are the file; it has no ``"test"``).

>>> examples = load_examples("addition:digits=2", n=2, seed=0)
>>> [(e.prompt[0].content, e.completion) for e in examples]
[('84+75=', '159\\n'), ('42+25=', '67\\n')]
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchllm.data.chat import Message, as_messages

INSTRUCTIONS = "stdlib-instructions"
HELD_OUT = 0.1  # the fraction of prompts (by hash) that split="test" holds
SPLITS = ("train", "test", "all")
FORMS = {
    "messages": "OpenAI chat ({'messages': [...]})",
    "alpaca": "Alpaca ({'instruction', 'input', 'output'})",
    "prompt": "prompt/completion ({'prompt', 'completion'})",
}


@dataclass(frozen=True)
class Example:
    """One conversation to learn from and where it came from (``"data.jsonl:12"``)."""

    messages: tuple[Message, ...]
    source: str

    @classmethod
    def from_pair(
        cls, prompt: str, completion: str, source: str, system: str | None = None
    ) -> Example:
        """A user prompt answered by ``completion`` (after an optional system message)."""
        head = (Message("system", system),) if system is not None else ()
        return cls((*head, Message("user", prompt), Message("assistant", completion)), source)

    @property
    def prompt(self) -> tuple[Message, ...]:
        """The messages before the last assistant message: what a model is given."""
        return self.messages[: self._last_reply()]

    @property
    def completion(self) -> str:
        """The last assistant message: what a model should answer."""
        return self.messages[self._last_reply()].content

    def _last_reply(self) -> int:
        return max(i for i, m in enumerate(self.messages) if m.role == "assistant")


# ---- the one entry point ----------------------------------------------------------------


def load_examples(
    source: str | Path,
    n: int | None = None,
    seed: int = 0,
    split: str = "train",
    cache_dir: str | Path | None = None,
) -> list[Example]:
    """The examples of a file, the stdlib instruction set or a language task (see above).

    ``n``: how many (a language's default is 10,000; for a file or the instruction set,
    the first ``n``, where the instruction set is shuffled by ``seed`` first; more than
    there are is an error). ``seed`` draws a language's samples. ``cache_dir`` is where
    the instruction set is cached (``corpus.default_cache_dir()`` by default).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n ({n!r}) must be a positive integer or None")
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file():
        if split == "test":
            raise ValueError(
                f"{path} is used whole: a file has no held-out split; pass a separate file "
                "of held-out examples (split='all' or 'train' reads this one)"
            )
        return _first(read_examples(path), n, text)
    if text == INSTRUCTIONS:
        return _first(instruction_examples(split, seed, cache_dir), n, text)
    from scratchllm.data import languages

    if text.split(":", 1)[0].strip().lower() in languages.FAMILIES:
        return language_examples(text, 10_000 if n is None else n, seed, split)
    hint = f" ({path} is a directory, not a file)" if path.is_dir() else ""
    raise ValueError(
        f"fine-tuning data {text!r} is not a file, {INSTRUCTIONS!r} or a language{hint}. Use a "
        f".jsonl file (OpenAI messages, Alpaca or prompt/completion), {INSTRUCTIONS!r} "
        f"(questions about Python's standard library), or a language task such as "
        f"'addition:digits=3' (tasks: {', '.join(task_families())})"
    )


def _first(examples: list[Example], n: int | None, source: str) -> list[Example]:
    if n is not None and n > len(examples):
        raise ValueError(f"{source} has {len(examples)} examples, fewer than the {n} asked for")
    return examples if n is None else examples[:n]


def in_held_out(prompt: str) -> bool:
    """Whether ``prompt`` is in the held-out split: a stable hash, the same on every run."""
    return zlib.crc32(prompt.encode("utf-8", "surrogatepass")) % 1000 < HELD_OUT * 1000


def _in_split(prompt: str, split: str) -> bool:
    return split == "all" or in_held_out(prompt) == (split == "test")


# ---- files ------------------------------------------------------------------------------


def read_examples(path: str | Path) -> list[Example]:
    """Every example of a ``.jsonl`` file (or of a ``.json`` file holding one array).

    One file holds one form (OpenAI messages, Alpaca or prompt/completion); a record in
    another form, a line that is not JSON, a missing or mistyped field is an error naming
    the file, the line and the field. A file without any example is an error too.
    """
    path = Path(path)
    records = list(json_records(path))
    if not records:
        raise ValueError(f"{path} holds no examples (it is empty or has only blank lines)")
    examples = []
    first_form = None
    for where, obj in records:
        form, messages = parse_record(obj, where)
        if first_form is None:
            first_form, first_where = form, where
        elif form != first_form:
            raise ValueError(
                f"{where}: this record is in the {FORMS[form]} form but {first_where} is "
                f"{FORMS[first_form]}; one file holds one form"
            )
        examples.append(Example(messages, where))
    return examples


def json_records(path: Path, arrays: bool = True) -> Iterator[tuple[str, Any]]:
    """``(where, parsed JSON)`` for each record of a JSONL file: ``"file:line"``; with
    ``arrays``, a file that is one JSON array gives its items (``"file item k"``)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
            "convert the file to UTF-8"
        ) from None
    if arrays and text.lstrip().startswith("["):  # one JSON array (Alpaca's own alpaca_data.json)
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})"
            ) from None
        for k, item in enumerate(items):
            yield f"{path} item {k}", item
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue  # a blank line holds no example
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno}); each line "
                "of a .jsonl file is one JSON object"
            ) from None


def parse_record(obj: Any, where: str) -> tuple[str, tuple[Message, ...]]:
    """``(form, messages)`` of one record; a clear error naming ``where`` and the field."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got a JSON {json_type(obj)}")
    if "messages" in obj:
        return "messages", _chat(obj["messages"], where)
    if "instruction" in obj or "output" in obj:
        instruction = _text(obj, "instruction", where, empty=False)
        extra = _text(obj, "input", where, empty=True, required=False)
        output = _text(obj, "output", where, empty=False)
        prompt = f"{instruction}\n\n{extra}" if extra else instruction
        return "alpaca", Example.from_pair(prompt, output, where).messages
    if "prompt" in obj or "completion" in obj:
        prompt = _text(obj, "prompt", where, empty=True)
        completion = _text(obj, "completion", where, empty=False)
        return "prompt", Example.from_pair(prompt, completion, where).messages
    raise ValueError(
        f"{where}: no 'messages', 'instruction'/'output' or 'prompt'/'completion' field "
        f"(it has {sorted(obj)[:5]}); a record is one of: {'; '.join(FORMS.values())}"
    )


def _chat(messages: Any, where: str) -> tuple[Message, ...]:
    if not isinstance(messages, list):
        raise ValueError(
            f"{where}: field 'messages' must be a list of messages, got a JSON "
            f"{json_type(messages)}"
        )
    flat = []
    for i, m in enumerate(messages):
        if isinstance(m, Mapping) and isinstance(m.get("content"), list):
            m = {**m, "content": _join_parts(m["content"], f"{where}: messages[{i}]")}
        flat.append(m)
    try:
        conversation = as_messages(flat)
    except ValueError as e:
        raise ValueError(f"{where}: field 'messages': {e}") from None
    replies = [m for m in conversation if m.role == "assistant" and m.weight]
    if not replies:
        raise ValueError(
            f"{where}: field 'messages' has no assistant message to learn (with weight 1)"
        )
    if any(not m.content for m in replies):
        i = next(i for i, m in enumerate(conversation) if m in replies and not m.content)
        raise ValueError(f"{where}: field 'messages': message {i} (assistant) is empty")
    return conversation


def _join_parts(parts: list, where: str) -> str:
    """OpenAI's content as a list of parts: only text parts can be read."""
    texts = []
    for k, part in enumerate(parts):
        if not isinstance(part, Mapping) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, Mapping) else json_type(part)
            raise ValueError(f"{where}.content[{k}] is a {kind!r} part; only 'text' parts work")
        if not isinstance(part.get("text"), str):
            raise ValueError(f"{where}.content[{k}]: field 'text' must be a string")
        texts.append(part["text"])
    return "".join(texts)


def _text(obj: dict, key: str, where: str, empty: bool, required: bool = True) -> str:
    if key not in obj:
        if not required:
            return ""
        raise ValueError(f"{where}: field {key!r} is missing")
    value = obj[key]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {key!r} must be a string, got a JSON {json_type(value)}")
    if not empty and not value.strip():
        raise ValueError(f"{where}: field {key!r} is empty")
    return value


def json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


# ---- languages as tasks -------------------------------------------------------------------


def task_families() -> list[str]:
    """The language families whose samples have an answer (an ``answer_mask`` of their own)."""
    from scratchllm.data.languages import FAMILIES, Language

    return [n for n, cls in FAMILIES.items() if cls.answer_mask is not Language.answer_mask]


def split_answer(lang: Any, sample: str) -> tuple[str, str]:
    """``(prompt, completion)`` of one sample: the text before its answer, and the answer.

    >>> from scratchllm.data.languages import get
    >>> split_answer(get("addition"), "37+45=82\\n")
    ('37+45=', '82\\n')
    """
    mask = lang.answer_mask(sample)
    start = mask.index(True) if True in mask else len(mask)
    if start == 0 or start == len(mask) or not all(mask[start:]):
        raise ValueError(
            f"{lang.spec}: the answer_mask of {sample!r} is not a question followed by its "
            "answer, so it cannot be split into a prompt and a completion"
        )
    return sample[:start], sample[start:]


def language_examples(spec: str, n: int, seed: int = 0, split: str = "train") -> list[Example]:
    """``n`` examples of the language ``spec`` as a task, drawn from ``random.Random(seed)``.

    Samples whose prompt is not in ``split`` are passed over (see the module docstring).
    A language without an answer (every character scored, e.g. ``markov``) is an error.
    """
    from scratchllm.data.languages import get

    lang = get(spec)
    if lang.name not in task_families():
        raise ValueError(
            f"language {lang.name!r} has no answer to complete: every character of its samples "
            f"is scored, so there is no prompt/completion split. Tasks: "
            f"{', '.join(task_families())} (e.g. 'addition:digits=3')"
        )
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    rng = random.Random(seed)
    examples: list[Example] = []
    drawn = 0
    limit = 50 * n + 1000  # a split holding no prompt at all would otherwise never end
    while len(examples) < n:
        if drawn >= limit:
            raise ValueError(
                f"{lang.spec}: after {drawn} samples only {len(examples)} had a prompt in the "
                f"{split!r} split; the language has too few distinct prompts for {n}"
            )
        prompt, completion = split_answer(lang, lang.sample(rng))
        if _in_split(prompt, split):
            examples.append(Example.from_pair(prompt, completion, f"{lang.spec} #{drawn}"))
        drawn += 1
    return examples


# ---- the standard library instruction set --------------------------------------------------


def instruction_examples(
    split: str = "train", seed: int = 0, cache_dir: str | Path | None = None
) -> list[Example]:
    """The stdlib question/answer pairs in ``split``, shuffled by ``seed``."""
    from scratchllm.data.instructions import stdlib_instructions

    pairs = stdlib_instructions(cache_dir)
    examples = [
        Example.from_pair(q, a, f"{INSTRUCTIONS}: {name}")
        for name, (q, a) in pairs.items()
        if _in_split(q, split)
    ]
    random.Random(seed).shuffle(examples)
    return examples
