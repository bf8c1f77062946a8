"""Preference data: a prompt, the reply people (or a verifier) preferred, and the other one.

One pair per line of a ``.jsonl`` file, in the form TRL's preference datasets use::

    {"prompt": "37+45=", "chosen": "82\\n", "rejected": "83\\n"}
    {"prompt": [{"role": "user", "content": "Hi"}],
     "chosen": [{"role": "assistant", "content": "Hello."}],
     "rejected": [{"role": "assistant", "content": "Go away."}]}

``prompt`` is a string (what the user says) or a list of messages (a system message, earlier
turns); ``chosen`` and ``rejected`` are a string or a list holding one assistant message.
A malformed line is an error naming the file, the line and the field (``pairs.jsonl:7:
field 'rejected' is missing``); nothing is skipped but blank lines. A pair whose two replies
are the same teaches nothing and is an error too (it is always a bug in the data).

``write_pairs`` writes the same form back (strings where the prompt is one user message), so
on-policy pairs built from a task (``finetuning.pairs``) are ordinary preference data.

>>> pair = parse_pair({"prompt": "1+1=", "chosen": "2\\n", "rejected": "3\\n"}, "x.jsonl:1")
>>> pair.prompt, pair.chosen
((Message(role='user', content='1+1=', weight=1),), '2\\n')
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchllm.data.chat import Message, as_messages
from scratchllm.data.sft import json_records, json_type
from scratchllm.files import write_text

FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferencePair:
    """One preference: ``chosen`` is the better reply to ``prompt``, ``rejected`` the worse."""

    prompt: tuple[Message, ...]  # what the model is given (ends before the reply)
    chosen: str
    rejected: str
    source: str = ""  # where it came from, e.g. "pairs.jsonl:12"

    @property
    def prompt_text(self) -> str:
        """The last user message: the question itself (a task's prompt, "37+45=")."""
        return next(m.content for m in reversed(self.prompt) if m.role == "user")

    def to_record(self) -> dict[str, Any]:
        one_user = len(self.prompt) == 1 and self.prompt[0].role == "user"
        prompt: Any = (
            self.prompt[0].content
            if one_user
            else [{"role": m.role, "content": m.content} for m in self.prompt]
        )
        return {"prompt": prompt, "chosen": self.chosen, "rejected": self.rejected}


def parse_pair(obj: Any, where: str) -> PreferencePair:
    """One record as a ``PreferencePair``; an error naming ``where`` and the field."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got a JSON {json_type(obj)}")
    for key in FIELDS:
        if key not in obj:
            raise ValueError(
                f"{where}: field {key!r} is missing; a preference pair has 'prompt', "
                "'chosen' and 'rejected'"
            )
    prompt = _prompt(obj["prompt"], where)
    chosen = _reply(obj["chosen"], where, "chosen")
    rejected = _reply(obj["rejected"], where, "rejected")
    if chosen == rejected:
        raise ValueError(
            f"{where}: fields 'chosen' and 'rejected' are the same reply ({chosen!r}); a pair "
            "must prefer one reply over a different one"
        )
    return PreferencePair(prompt, chosen, rejected, where)


def _prompt(value: Any, where: str) -> tuple[Message, ...]:
    if isinstance(value, str):
        return (Message("user", value),)
    if not isinstance(value, list):
        raise ValueError(
            f"{where}: field 'prompt' must be a string or a list of messages, got a JSON "
            f"{json_type(value)}"
        )
    try:
        messages = as_messages(value)
    except ValueError as e:
        raise ValueError(f"{where}: field 'prompt': {e}") from None
    if messages[-1].role == "assistant":
        raise ValueError(
            f"{where}: field 'prompt' ends with an assistant message; the prompt is what comes "
            "before the reply (put the replies in 'chosen' and 'rejected')"
        )
    if not any(m.role == "user" for m in messages):
        raise ValueError(f"{where}: field 'prompt' has no user message")
    return messages


def _reply(value: Any, where: str, field: str) -> str:
    if isinstance(value, list):
        try:
            messages = as_messages(value)
        except ValueError as e:
            raise ValueError(f"{where}: field {field!r}: {e}") from None
        if len(messages) != 1 or messages[0].role != "assistant":
            roles = [m.role for m in messages]
            raise ValueError(
                f"{where}: field {field!r} must hold one assistant message, got {roles}"
            )
        value = messages[0].content
    if not isinstance(value, str):
        raise ValueError(
            f"{where}: field {field!r} must be a string or a list with one assistant message, "
            f"got a JSON {json_type(value)}"
        )
    if not value:
        raise ValueError(f"{where}: field {field!r} is empty")
    return value


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """Every pair of a ``.jsonl`` file (module docstring); an empty file is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such preference file")
    pairs = [parse_pair(obj, where) for where, obj in json_records(path, arrays=False)]
    if not pairs:
        raise ValueError(f"{path} holds no preference pairs (it is empty or only blank lines)")
    return pairs


def write_pairs(path: str | Path, pairs: Iterable[PreferencePair]) -> Path:
    """Write ``pairs`` as JSONL (whole or not at all), one pair per line."""
    lines = [json.dumps(p.to_record(), ensure_ascii=False) for p in pairs]
    return write_text(path, "".join(line + "\n" for line in lines))
