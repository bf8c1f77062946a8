"""Token ids to text while they are generated: complete characters only, and stop strings.

A tokenizer-side helper with no model in it, so both engines' decode loops share it
(``scratchllm.generation`` and the torch-free ``scratchllm.numpy_gpt``).

A byte-level BPE token can end in the middle of a UTF-8 character ("é" is two bytes, an
emoji four), so decoding tokens one at a time would print replacement characters. The
``IncrementalDecoder`` decodes a short sliding span of tokens and only hands out text once
it no longer ends in U+FFFD, the mark of an unfinished character. Decoding a span rather
than the lone new token also keeps the spaces a tokenizer puts between tokens (the word
tokenizer joins words with spaces).

>>> pieces = [b"caf", b"\\xc3", b"\\xa9!"]  # "café!" with "é" split over two tokens
>>> d = IncrementalDecoder(lambda ids: b"".join(pieces[i] for i in ids).decode(errors="replace"))
>>> [d.push(i) for i in range(3)]
['caf', '', 'é!']

``TextTracker`` adds stop strings: it keeps the text generated so far, finds the first
stop string in it and says how many tokens lie wholly before it, and how much text can
be shown now without risking that it is the start of a stop string.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Decode = Callable[[list[int]], str]


def decode_function(tokenizer: Any) -> Decode:
    """``tokenizer.decode`` for a tokenizer object, or the callable itself."""
    decode = getattr(tokenizer, "decode", tokenizer)
    if not callable(decode):
        raise ValueError(
            f"tokenizer must have a decode(ids) -> str method or be such a function, "
            f"got {type(tokenizer).__name__}"
        )
    return decode


class IncrementalDecoder:
    """Feed token ids one by one, get back text made of complete characters."""

    def __init__(self, decode: Decode) -> None:
        self.decode = decode
        self.ids: list[int] = []
        self.prefix = 0  # ids[prefix:read] were decoded last time (context for spacing)
        self.read = 0  # ids[:read] have been turned into text

    @property
    def pending(self) -> bool:
        """True while some pushed tokens have not produced their text yet."""
        return self.read < len(self.ids)

    def push(self, token: int) -> str:
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix : self.read])
        text = self._decode(self.ids[self.prefix :])
        if text is None or before is None or text.endswith("\ufffd") or len(text) <= len(before):
            return ""  # an unfinished character: wait for the next token
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(before) :]

    def flush(self) -> str:
        """The text of any tokens still pending, unfinished characters shown as U+FFFD."""
        if not self.pending:
            return ""
        before = self.decode(self.ids[self.prefix : self.read])
        text = self.decode(self.ids[self.prefix :])
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(before) :]

    def _decode(self, ids: list[int]) -> str | None:
        try:
            return self.decode(ids)
        except UnicodeDecodeError:  # a strict tokenizer refuses half a character: wait too
            return None


class TextTracker:
    """The generated text of one row, its token boundaries, and the stop strings in it.

    >>> t = TextTracker(lambda ids: "".join("ab\\n"[i] for i in ids), stop=["\\n\\n"])
    >>> [t.push(i) for i in [0, 1, 2, 2, 0]]  # "ab\\n\\n..." stops at the second newline
    [False, False, False, True, True]
    >>> t.text[: t.stop_at], t.tokens_before_stop()
    ('ab', 2)
    """

    def __init__(self, decode: Decode, stop: Sequence[str] = ()) -> None:
        self.decoder = IncrementalDecoder(decode)
        self.stop = [s for s in stop if s]
        self.longest = max((len(s) for s in self.stop), default=0)
        self.text = ""
        self.ends: list[int] = []  # len(text) after each token, -1 while it was unfinished
        self.stop_at: int | None = None  # where the first stop string starts in text

    def push(self, token: int) -> bool:
        """Add a token; True once a stop string has appeared (the row should end)."""
        if self.stop_at is not None:
            return True
        piece = self.decoder.push(token)
        self.ends.append(-1 if self.decoder.pending else len(self.text) + len(piece))
        if piece:
            search_from = max(0, len(self.text) - self.longest + 1)
            self.text += piece
            found = [i for s in self.stop if (i := self.text.find(s, search_from)) >= 0]
            if found:
                self.stop_at = min(found)
        return self.stop_at is not None

    def finish(self) -> None:
        """No more tokens: decode what is pending (stop strings no longer matter)."""
        if self.stop_at is None:
            self.text += self.decoder.flush()

    def tokens_before(self, char_end: int) -> int:
        """How many leading tokens decode to complete text ending at or before ``char_end``."""
        n = 0
        for i, end in enumerate(self.ends):
            if end > char_end:
                break
            if end >= 0:
                n = i + 1
        return n

    def tokens_before_stop(self) -> int:
        """The tokens to keep when a stop string appeared: those wholly before it."""
        return self.tokens_before(self.stop_at if self.stop_at is not None else len(self.text))

    def safe_end(self) -> int:
        """How much of ``text`` can be shown now: all of it, less any tail that might be
        the beginning of a stop string (and up to the stop string once one is found)."""
        if self.stop_at is not None:
            return self.stop_at
        for k in range(min(self.longest - 1, len(self.text)), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return len(self.text) - k
        return len(self.text)
