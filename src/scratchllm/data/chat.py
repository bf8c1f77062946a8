"""The chat format: messages, and the template that turns a conversation into token ids.

A conversation is a list of ``Message(role, content)`` with roles ``system``, ``user`` and
``assistant`` (``{"role": ..., "content": ...}`` dicts work too). ``ChatTemplate`` writes
each turn as a role token, the content, and an end-of-turn token::

    <|system|>Be brief.<|end|><|user|>What does json.dumps do?<|end|><|assistant|>Serialize.<|end|>

The role and end tokens are special tokens of the tokenizer (``with_special_tokens``), so
no text can produce them, and the template puts no other text of its own between turns:
it works with any tokenizer, even a character tokenizer that only knows digits.

``render(messages) -> (ids, mask)``: ``mask[i]`` says whether predicting ``ids[i]`` counts
in the loss. It is True on each assistant message's content and on its end token (so the
model learns to stop) and False elsewhere (role tokens too: the template writes them).
``render_prompt(messages)`` ends with the assistant role token, ready for generation,
which stops at the end token. ``text(messages)`` is the same as one string, exactly what
the model reads, and ``show(messages)`` marks the trained characters under it.

The template is data: four strings, saved as ``chat_template.json`` beside the
``tokenizer.json`` it belongs to (``save``/``load``). Training, ``scratchllm chat`` and the
server read the same file. ``ChatTemplate.plain`` has no tokens at all: a prompt and its
completion are simply concatenated, the format of a synthetic language (whose answer
ends with its own END).

>>> from scratchllm.tokenizers import CharTokenizer
>>> chat = ChatTemplate.create(CharTokenizer.train("0123456789+=\\n"))
>>> conversation = [Message("user", "2+2="), Message("assistant", "4")]
>>> ids, mask = chat.render(conversation)
>>> ids, [int(m) for m in mask]
([14, 4, 1, 4, 12, 16, 15, 6, 16], [0, 0, 0, 0, 0, 0, 0, 1, 1])
>>> print(chat.show(conversation))
<|user|>2+2=<|end|><|assistant|>4<|end|>
                                ^^^^^^^^
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from scratchllm.tokenizers import TOKENIZER_FILE, Tokenizer
from scratchllm.tokenizers import load as load_tokenizer

ROLES = ("system", "user", "assistant")
TEMPLATE_FILE = "chat_template.json"
FORMAT = "scratchllm-chat-template"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Message:
    """One turn. ``weight`` (assistant only, 0 or 1, OpenAI's fine-tuning field) says
    whether training learns this reply; other roles are never learned."""

    role: str
    content: str
    weight: int = 1


def as_messages(messages: Iterable[Message | Mapping[str, Any]]) -> tuple[Message, ...]:
    """Check a conversation and return it as ``Message`` objects.

    Each item is a ``Message`` or a mapping with ``role`` and ``content`` (and optionally
    ``weight``). An error names the message's index and the field that is wrong.
    """
    if isinstance(messages, str | bytes | Mapping):
        raise ValueError(
            "messages must be a list of {'role', 'content'} messages, "
            f"got a {type(messages).__name__}"
        )
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            role, content, weight = m.role, m.content, m.weight
        elif isinstance(m, Mapping):
            unknown = set(m) - {"role", "content", "weight"}
            if unknown:
                raise ValueError(
                    f"message {i} has field {sorted(unknown)[0]!r}; a message has 'role', "
                    "'content' and (assistant only) 'weight' (names, tool calls and "
                    "function calls are not supported)"
                )
            if "role" not in m or "content" not in m:
                missing = "role" if "role" not in m else "content"
                raise ValueError(f"message {i} has no {missing!r} field")
            role, content, weight = m["role"], m["content"], m.get("weight", 1)
        else:
            raise ValueError(f"message {i} is a {type(m).__name__}, not a message object")
        if role not in ROLES:
            raise ValueError(f"message {i}: 'role' is {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ValueError(
                f"message {i} ({role}): 'content' must be a string, got {type(content).__name__}"
            )
        if weight not in (0, 1) or isinstance(weight, float | bool):
            raise ValueError(f"message {i} ({role}): 'weight' must be 0 or 1, got {weight!r}")
        if weight == 0 and role != "assistant":
            raise ValueError(f"message {i} ({role}): only assistant messages have a 'weight'")
        out.append(Message(role, content, weight))
    if not out:
        raise ValueError("a conversation needs at least one message")
    return tuple(out)


@dataclass(frozen=True)
class ChatTemplate:
    """Role tokens and an end-of-turn token, bound to the tokenizer that has them.

    An empty string means "no token" (``plain`` leaves all four empty). Build one with
    ``create`` (which adds the tokens to a tokenizer) or ``load``; the constructor takes a
    tokenizer that already has them.
    """

    tokenizer: Tokenizer = field(repr=False)
    system: str = "<|system|>"  # opens a system turn
    user: str = "<|user|>"  # opens a user turn
    assistant: str = "<|assistant|>"  # opens an assistant turn; render_prompt ends with it
    end: str = "<|end|>"  # closes every turn; the model learns to emit it, generation stops

    def __post_init__(self) -> None:
        for name in ("system", "user", "assistant", "end"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"template field {name!r} must be a string")
        have = self.tokenizer.special_tokens
        missing = [t for t in self.special_tokens if t not in have]
        if missing:
            raise ValueError(
                f"the tokenizer has no special tokens {missing}; build the template with "
                "ChatTemplate.create(tokenizer), which adds them (then grow the model's "
                "vocabulary with scratchllm.models.vocab.grow_vocab)"
            )

    # ---- building ------------------------------------------------------------------------

    @classmethod
    def create(cls, tokenizer: Tokenizer, **tokens: str) -> ChatTemplate:
        """A template whose tokenizer is ``tokenizer`` plus any of its tokens it lacks.

        ``tokens`` overrides the defaults (``system=``, ``user=``, ``assistant=``, ``end=``).
        If tokens were added, ``template.tokenizer.vocab_size`` is larger than before: grow
        the model to it (``grow_vocab(model, template.tokenizer)``).
        """
        defaults = {k: v for k, v in _FIELDS.items() if k not in tokens}
        strings = [t for t in {**defaults, **tokens}.values() if t]
        return cls(tokenizer.with_special_tokens(strings), **tokens)

    @classmethod
    def plain(cls, tokenizer: Tokenizer) -> ChatTemplate:
        """No tokens: messages are concatenated; the mask is on the assistant content."""
        return cls(tokenizer, system="", user="", assistant="", end="")

    @property
    def special_tokens(self) -> list[str]:
        """The template's tokens that exist (the non-empty ones), in field order."""
        return [t for t in (self.system, self.user, self.assistant, self.end) if t]

    @property
    def end_id(self) -> int | None:
        """The id generation stops at (None for a plain template)."""
        return self.tokenizer.special_tokens[self.end] if self.end else None

    # ---- rendering -----------------------------------------------------------------------

    def render(
        self, messages: Iterable[Message | Mapping[str, Any]]
    ) -> tuple[list[int], list[bool]]:
        """``(ids, mask)`` of a conversation for training; see the module docstring.

        It needs an assistant message with ``weight`` 1: without one nothing would be learned.
        """
        messages = as_messages(messages)
        if not any(m.role == "assistant" and m.weight for m in messages):
            raise ValueError(
                "the conversation has no assistant message to learn (with weight 1); "
                "training needs at least one"
            )
        ids: list[int] = []
        mask: list[bool] = []
        for i, m in enumerate(messages):
            learn = m.role == "assistant" and m.weight == 1
            for part, trained in self._turn(m, i):
                ids += part
                mask += [learn and trained] * len(part)
        return ids, mask

    def render_prompt(self, messages: Iterable[Message | Mapping[str, Any]]) -> list[int]:
        """The ids of ``messages`` followed by the assistant token: what generation starts from."""
        ids: list[int] = []
        for i, m in enumerate(as_messages(messages)):
            for part, _ in self._turn(m, i):
                ids += part
        return ids + self._token(self.assistant)

    def _turn(self, m: Message, index: int) -> list[tuple[list[int], bool]]:
        """One message as ``[(ids, trained if assistant)]``: role token, content, end token."""
        try:
            content = self.tokenizer.encode_ordinary(m.content)
        except ValueError as e:
            raise ValueError(f"message {index} ({m.role}): {e}") from None
        return [
            (self._token(getattr(self, m.role)), False),
            (content, True),
            (self._token(self.end), True),
        ]

    def _token(self, token: str) -> list[int]:
        return [self.tokenizer.special_tokens[token]] if token else []

    def reply(self, ids: Sequence[int]) -> str:
        """The text of generated ``ids`` up to (not including) the first end token."""
        ids = list(ids)
        if self.end_id is not None and self.end_id in ids:
            ids = ids[: ids.index(self.end_id)]
        return self.tokenizer.decode(ids)

    # ---- looking at it -------------------------------------------------------------------

    def text(self, messages: Iterable[Message | Mapping[str, Any]], prompt: bool = False) -> str:
        """The conversation as the one string the model reads (``prompt``: as generation
        starts, ending with the assistant token). Encoding it with every special allowed
        gives ``render``'s ids (for content that holds no special token's string)."""
        parts = []
        for m in as_messages(messages):
            parts += [getattr(self, m.role), m.content, self.end]
        return "".join(parts) + (self.assistant if prompt else "")

    def show(self, messages: Iterable[Message | Mapping[str, Any]]) -> str:
        """The rendered conversation as decoded text, with ``^`` under every trained
        character; a newline shows as ``\\n`` (and a tab as ``\\t``) to keep one line."""
        ids, mask = self.render(messages)
        line, marks = [], []
        start = 0
        for end in range(1, len(ids) + 1):  # decode runs of equal mask (turn boundaries)
            if end == len(ids) or mask[end] != mask[start]:
                piece = self.tokenizer.decode(ids[start:end])
                piece = piece.replace("\n", "\\n").replace("\t", "\\t")
                line.append(piece)
                marks.append(("^" if mask[start] else " ") * len(piece))
                start = end
        return "".join(line) + "\n" + "".join(marks).rstrip()

    # ---- files ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        example = [Message("user", "Hi!"), Message("assistant", "Hello.")]
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            **{name: getattr(self, name) for name in _FIELDS},
            "example": self.text(example),  # for a person reading the file; not read back
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``chat_template.json`` and the tokenizer's ``tokenizer.json`` into
        ``directory``; return the template file's path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(directory)
        path = directory / TEMPLATE_FILE
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ChatTemplate:
        """Read ``chat_template.json`` and the ``tokenizer.json`` beside it."""
        directory = Path(directory)
        path = directory / TEMPLATE_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: {directory} has no chat template (a chat "
                "fine-tuned checkpoint has one; ChatTemplate.create(tokenizer).save(dir) "
                "writes one)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON ({e}); re-save the template") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a scratchllm chat template (no 'format': {FORMAT!r})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} has chat template version {data.get('version')!r}; this scratchllm "
                f"reads version {FORMAT_VERSION}"
            )
        fields = {name: data.get(name) for name in _FIELDS}
        bad = [name for name, v in fields.items() if not isinstance(v, str)]
        if bad:
            raise ValueError(f'{path}: {bad[0]!r} must be a string ("" for no token)')
        tokenizer = load_tokenizer(directory / TOKENIZER_FILE)
        try:
            return cls(tokenizer, **fields)
        except ValueError as e:
            raise ValueError(f"{path} does not fit {directory / TOKENIZER_FILE}: {e}") from None


# The four token fields and their defaults, in order.
_FIELDS = {f.name: f.default for f in fields(ChatTemplate) if f.name != "tokenizer"}
