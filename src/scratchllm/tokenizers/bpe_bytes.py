"""The byte-level alphabet: how GPT-2 writes any byte as a printable character.

A byte-level BPE works on raw UTF-8 bytes, but vocab.json, merges.txt and
tokenizer.json are text files, and a merges line is "left right" split on a
space. GPT-2 therefore maps each of the 256 bytes to one printable Unicode
character: the 188 bytes that already print as themselves (``!``..``~``,
``¡``..``¬``, ``®``..``ÿ``) keep their character, and the other 68 (control
characters, space, DEL, NBSP, soft hyphen, ...) are sent, in byte order, to
the code points 256, 257, ... That is why a space shows up as ``Ġ`` (U+0120)
and a newline as ``Ċ`` (U+010A) in GPT-2's files.

>>> BYTE_TO_CHAR[ord(" ")], BYTE_TO_CHAR[ord("\\n")], BYTE_TO_CHAR[ord("a")]
('Ġ', 'Ċ', 'a')
>>> token_to_str(" héllo".encode())
'ĠhÃ©llo'
>>> str_to_token('ĠhÃ©llo').decode()
' héllo'
"""

from __future__ import annotations


def _byte_to_char() -> tuple[str, ...]:
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


BYTE_TO_CHAR: tuple[str, ...] = _byte_to_char()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in enumerate(BYTE_TO_CHAR)}

# The order Hugging Face's BpeTrainer gives the 256 byte characters: it sorts its initial
# alphabet by code point, so "!" (byte 33) comes first and the remapped control bytes last.
# Its trainer breaks count ties by the smaller (left id, right id) in that order, so our
# trainer compares pairs in the same order to learn the same merges (see bpe_train.py).
HF_BYTE_ORDER: tuple[int, ...] = tuple(sorted(range(256), key=lambda b: ord(BYTE_TO_CHAR[b])))

_ENCODE_TABLE = {b: c for b, c in enumerate(BYTE_TO_CHAR)}


def token_to_str(token: bytes) -> str:
    """The byte-level string of a token, as written in vocab.json / merges.txt."""
    return "".join(map(_ENCODE_TABLE.__getitem__, token))


def str_to_token(s: str) -> bytes:
    """Inverse of ``token_to_str``; ``KeyError`` if ``s`` has a character outside the alphabet."""
    return bytes(map(CHAR_TO_BYTE.__getitem__, s))


def is_byte_level(s: str) -> bool:
    """Whether every character of ``s`` belongs to the byte-level alphabet."""
    return all(c in CHAR_TO_BYTE for c in s)
