"""Pre-tokenization: the regex that cuts text into chunks before BPE sees it.

BPE never merges across a chunk boundary, so the pattern decides what a token
can be: with the GPT-2 pattern a token never spans a letter and a digit, and a
leading space sticks to the word after it (" world"), never to the one before.

>>> split(GPT2_PATTERN, "Hello world's 2024!!")
['Hello', ' world', "'s", ' 2024', '!!']
>>> split(GPT4_PATTERN, "Hello world's 2024!!")
['Hello', ' world', "'s", ' ', '202', '4', '!!']
"""

from __future__ import annotations

import re
from functools import lru_cache

import regex

# GPT-2's pattern, exactly as Hugging Face's ByteLevel pre-tokenizer uses it.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's (tiktoken cl100k_base): case-insensitive contractions, at most 3 digits per chunk,
# one non-letter may lead a word, newlines grouped with the punctuation or spaces before them.
# tiktoken writes the digits as \p{N}{1,3}+ (possessive); we drop that "+", which changes
# nothing for tiktoken or the regex module, because Oniguruma (HF tokenizers) reads
# "{1,3}+" as "({1,3})+", i.e. any number of digits, and would disagree.
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
PATTERNS: dict[str, str] = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}


def resolve(pattern: str) -> str:
    """The regex for a pattern name ("gpt2", "gpt4") or a custom regex string, checked.

    A bare word that is not a known name is an error rather than a regex that matches
    itself literally (``"gpt-4"`` is almost surely a typo).
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(
            f"pattern must be 'gpt2', 'gpt4' or a regular expression string, got {pattern!r}"
        )
    if pattern in PATTERNS:
        return PATTERNS[pattern]
    if regex.fullmatch(r"[A-Za-z0-9_.-]+", pattern):
        raise ValueError(
            f"unknown pattern name {pattern!r}; use 'gpt2', 'gpt4' or a regular expression"
        )
    try:
        compiled(pattern)
    except regex.error as e:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {e}") from None
    return pattern


def name_of(pattern: str) -> str | None:
    """ "gpt2" or "gpt4" if ``pattern`` is one of the named regexes, else None."""
    return next((name for name, p in PATTERNS.items() if p == pattern), None)


@lru_cache(maxsize=16)
def compiled(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


def split(pattern: str, text: str) -> list[str]:
    """Cut ``text`` into chunks; the chunks joined give ``text`` back.

    The named patterns match every character, so their chunks are the matches. A custom
    pattern may skip text; like Hugging Face's ``Split(behavior="isolated")``, the text
    between two matches then becomes a chunk of its own, so nothing is lost.
    """
    if pattern in _COVERING:
        if text.isascii():  # O(1) on a str
            return _ascii_twin(pattern).findall(text)
        return compiled(pattern).findall(text)
    rx = compiled(pattern)
    chunks: list[str] = []
    pos = 0
    for m in rx.finditer(text):
        start, end = m.span()
        if start == end:  # an empty match cuts nothing
            continue
        if start > pos:
            chunks.append(text[pos:start])
        chunks.append(text[start:end])
        pos = end
    if pos < len(text):
        chunks.append(text[pos:])
    return chunks


_COVERING = frozenset(PATTERNS.values())


@lru_cache(maxsize=4)
def _ascii_twin(pattern: str) -> re.Pattern:
    """The same pattern for text that is all ASCII, written for the stdlib ``re``.

    ``re`` runs these patterns 2-3x faster than ``regex`` but knows no ``\\p{L}``; on ASCII
    text a letter is [A-Za-z], a number [0-9], and whitespace (Unicode's White_Space, as
    ``regex`` and Oniguruma read ``\\s``) is [\t\n\v\f\r ]: not \x1c-\x1f, which ``re``'s
    own ``\\s`` would take. The tests hold both versions equal on every ASCII character.
    """
    space = r"\t\n\x0b\x0c\r "
    for unicode, ascii_ in [
        (r"[^\s\p{L}\p{N}]", rf"[^{space}A-Za-z0-9]"),
        (r"[^\r\n\p{L}\p{N}]", r"[^\r\nA-Za-z0-9]"),
        (r"\p{L}", "[A-Za-z]"),
        (r"\p{N}", "[0-9]"),
        (r"\S", f"[^{space}]"),
        (r"\s", f"[{space}]"),
    ]:
        pattern = pattern.replace(unicode, ascii_)
    return re.compile(pattern)
