"""Byte-level BPE: GPT-2's tokenizer, trained from scratch, equal to tiktoken and HF tokenizers.

Text is cut into chunks by a regex (``bpe_pattern``), each chunk becomes its
UTF-8 bytes, and learned merges join adjacent tokens, lowest rank first, until
none applies. Any string can be encoded (every byte is a token) and decoded
back exactly.

>>> tok = BPETokenizer.train("aaabdaaabac", vocab_size=256 + 3)
>>> tok.encode("aaabdaaabac")
[258, 100, 258, 97, 99]
>>> tok.decode([258, 100])
'aaabd'

Ids: 0..255 are the bytes themselves, merges get 256, 257, ... in the order
they were learned, and special tokens get the ids after the merges.
A tokenizer read from a file keeps that file's ids (GPT-2's differ).
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import regex

from scratchllm.files import output_directory
from scratchllm.tokenizers import bpe_hf, bpe_pattern
from scratchllm.tokenizers.base import (
    TOKENIZER_FILE,
    AllowedSpecial,
    Tokenizer,
    check_training_text,
    is_token_id,
    new_special_tokens,
    read_tokenizer_json,
    resolve_allowed,
    specials_regex,
)
from scratchllm.tokenizers.bpe_merge import int_ranks, merge_long, merge_scan
from scratchllm.tokenizers.bpe_train import learn_merges

if TYPE_CHECKING:
    import tiktoken

_CACHE_LIMIT = 1 << 18  # chunk -> ids entries kept before the cache starts over
# Chunks up to this many bytes use the O(n^2) rescan, which is faster for them than the
# O(n log n) linked list (measured: they break even at about 64 bytes).
_SCAN_LIMIT = 64


class BPETokenizer(Tokenizer):
    """A byte-level BPE tokenizer: its vocabulary, merges, pre-tokenization pattern, specials.

    Build one with ``BPETokenizer.train``, ``BPETokenizer.load`` (a tokenizer.json),
    or ``BPETokenizer.from_gpt2_files`` (vocab.json + merges.txt). The constructor takes
    the plain data: ``vocab`` maps each ordinary token id to its bytes, ``merges`` lists
    ``(left id, right id)`` by priority (the token they make is the one whose bytes are
    the two joined), ``pattern`` is "gpt2", "gpt4" or a regex, and ``special_tokens`` maps
    strings like ``"<|endoftext|>"`` to their ids. With ``ignore_merges`` a chunk that is
    itself a token becomes that token directly (as Llama-3-style tokenizer.json files ask).
    """

    kind = "bpe"

    def __init__(
        self,
        vocab: Mapping[int, bytes],
        merges: Sequence[tuple[int, int]],
        pattern: str = "gpt2",
        special_tokens: Mapping[str, int] | None = None,
        ignore_merges: bool = False,
    ) -> None:
        self.pattern = bpe_pattern.resolve(pattern)
        self._vocab = dict(vocab)
        self._merges = [(int(a), int(b)) for a, b in merges]
        self._specials = dict(special_tokens or {})
        self.ignore_merges = ignore_merges
        self._id_of = {t: i for i, t in self._vocab.items()}
        if len(self._id_of) != len(self._vocab):
            raise ValueError("two vocabulary ids have the same bytes; each token must be unique")
        clash = set(self._specials.values()) & set(self._vocab)
        if clash:
            raise ValueError(f"special token ids {sorted(clash)[:5]} are also ordinary token ids")
        # Derived lookup tables: everything below follows from the four fields above.
        self._byte_ids = [self._id_of.get(bytes([b])) for b in range(256)]
        self._bytes_are_ids = self._byte_ids == list(range(256))
        self._rank: dict[tuple[int, int], int] = {}
        self._merged: dict[tuple[int, int], int] = {}
        for rank, (a, b) in enumerate(self._merges):
            if a not in self._vocab or b not in self._vocab:
                raise ValueError(f"merge #{rank} ({a}, {b}) uses an id that is not in the vocab")
            made = self._id_of.get(self._vocab[a] + self._vocab[b])
            if made is None:
                raise ValueError(
                    f"merge #{rank} ({a}, {b}) makes {self._vocab[a] + self._vocab[b]!r}, "
                    "which is not in the vocab"
                )
            self._rank.setdefault((a, b), rank)  # a repeated merge keeps its first rank
            self._merged.setdefault((a, b), made)
        self._made_by_rank = [self._merged[p] for p in self._merges]
        self._int_rank: dict[int, int] | None = None  # the ranks as merge_long reads them
        n = 1 + max([*self._vocab, *self._specials.values()], default=-1)
        self._bytes: list[bytes | None] = [None] * n  # id -> bytes, for decode
        for i, t in self._vocab.items():
            self._bytes[i] = t
        for s, i in self._specials.items():
            self._bytes[i] = s.encode("utf-8")
        self._cache: dict[str, list[int]] = {}
        self._special_rx: dict[frozenset[str], regex.Pattern] = {}

    # ----------------------------------------------------------------- training

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        pattern: str = "gpt2",
        special_tokens: Iterable[str] = (),
        progress: bool = False,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        ``vocab_size`` counts the 256 bytes, the merges and the special tokens. Merges
        are learned over the distinct pre-token chunks of ``text`` (split by ``pattern``:
        "gpt2", "gpt4" or a regex), and special tokens in ``text`` are cut out first so
        they are never merged. Training stops early if no pair of tokens is left to
        merge (a tiny text); ``vocab_size`` then reports the smaller size. Ties between
        equally frequent pairs break as in HF ``tokenizers`` (see ``bpe_train``), so
        both learn the same merges. ``progress`` shows a tqdm bar.

        Ids: 0..255 are the bytes, merges 256, 257, ... in order, specials after them.
        """
        check_training_text(text)
        specials = new_special_tokens(special_tokens, existing=())
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
        smallest = 256 + len(specials)
        if vocab_size < smallest:
            raise ValueError(
                f"vocab_size ({vocab_size}) is smaller than the 256 byte tokens plus "
                f"{len(specials)} special tokens ({smallest}); use at least {smallest}"
            )
        pat = bpe_pattern.resolve(pattern)
        _check_no_surrogates(text)
        counts: Counter[str] = Counter()
        pieces = specials_regex(specials).split(text) if specials else [text]
        for k, piece in enumerate(pieces):
            if k % 2 == 0:  # odd pieces are the special tokens themselves
                counts.update(bpe_pattern.split(pat, piece))
        chunk_counts = {chunk.encode("utf-8"): c for chunk, c in counts.items()}
        merges, vocab = learn_merges(chunk_counts, vocab_size - smallest, progress=progress)
        first_special = len(vocab)
        special_ids = {s: first_special + k for k, s in enumerate(specials)}
        return cls(vocab, [(a, b) for a, b, _ in merges], pat, special_ids)

    # ----------------------------------------------------------------- encoding

    def encode(
        self,
        text: str,
        *,
        allowed_special: AllowedSpecial = "none_raise",
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Encode ``text``; special tokens are handled as in tiktoken.

        A special token string in ``text`` becomes its special id only when
        ``allowed_special`` lets it (a set of strings, or ``"all"``); it is never split.
        By default none is allowed and ``disallowed_special="all"`` makes any special
        token string in the text an error, because text from users that happens to hold
        ``<|endoftext|>`` should not end a document by accident. Pass
        ``disallowed_special=()`` to encode such text as ordinary text instead.

        >>> tok = BPETokenizer.train("hello world", 260, special_tokens=["<|eot|>"])
        >>> tok.encode("hi<|eot|>", allowed_special="all")[-1] == tok.special_tokens["<|eot|>"]
        True
        """
        allowed = resolve_allowed(allowed_special, self._specials)
        if disallowed_special == "all":
            disallowed = set(self._specials) - allowed
        else:
            disallowed = set(disallowed_special)
        if disallowed and (m := self._regex_for(disallowed).search(text)):
            raise ValueError(
                f"text contains the special token {m.group()!r} at position {m.start()}, which "
                f"is not allowed; pass allowed_special={{{m.group()!r}}} (or 'all') to encode it "
                "as a special token, or disallowed_special=() to encode it as ordinary text"
            )
        if not allowed:
            return self.encode_ordinary(text)
        _check_no_surrogates(text)
        ids: list[int] = []
        for k, piece in enumerate(self._regex_for(allowed).split(text)):
            if k % 2:
                ids.append(self._specials[piece])
            elif piece:
                ids += self._encode_chunks(piece)
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` with no special token handling (a special's string is just text)."""
        _check_no_surrogates(text)
        return self._encode_chunks(text)

    def _encode_chunks(self, text: str) -> list[int]:
        # Text repeats: most chunks were seen before, so their ids come from the cache and
        # only new chunks pay for the merge loop. The lookups and the concatenation run as
        # C loops (set difference, map, chain): a Python loop per chunk would cost as much
        # as the regex itself.
        chunks = bpe_pattern.split(self.pattern, text)
        cache = self._cache
        new = set(chunks).difference(cache)
        if new:
            if len(cache) + len(new) > _CACHE_LIMIT:  # start over, keeping this text's chunks
                cache = {c: cache[c] for c in set(chunks) - new}
                if len(cache) + len(new) <= _CACHE_LIMIT:
                    self._cache = cache
            for chunk in new:
                cache[chunk] = self._bpe(chunk.encode("utf-8"))
        return list(chain.from_iterable(map(cache.__getitem__, chunks)))

    def _bpe(self, data: bytes) -> list[int]:
        """The ids of one chunk: start from its bytes, apply the lowest-ranked merge until none.

        Short chunks (almost all of them) use ``bpe_merge.merge_scan``; long ones
        ``merge_long``, whose cost grows as n log n instead of n^2 (see ``bpe_merge``).

        >>> tok = BPETokenizer.train("aaabdaaabac", 259)
        >>> tok._bpe(b"aaab")
        [258]
        """
        if self.ignore_merges and (whole := self._id_of.get(data)) is not None:
            return [whole]
        # Trained tokenizers give byte b the id b, so the bytes are already the ids.
        ids = list(data) if self._bytes_are_ids else [self._byte_ids[b] for b in data]
        if None in ids:
            missing = next(b for b in data if self._byte_ids[b] is None)
            raise ValueError(
                f"byte 0x{missing:02x} has no token in this vocabulary, so {data!r} cannot be "
                "encoded; train or export the tokenizer with all 256 bytes"
            )
        if len(ids) <= _SCAN_LIMIT:
            return merge_scan(ids, self._rank, self._made_by_rank)  # type: ignore[arg-type]
        if self._int_rank is None:
            self._int_rank = int_ranks(self._rank)
        return merge_long(ids, self._int_rank, self._made_by_rank)  # type: ignore[arg-type]

    def _regex_for(self, specials: Collection[str]) -> regex.Pattern:
        key = frozenset(specials)
        if key not in self._special_rx:
            self._special_rx[key] = specials_regex(key)
        return self._special_rx[key]

    # ----------------------------------------------------------------- decoding

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that ``ids`` stand for (special tokens as their UTF-8 text)."""
        ids = list(ids)
        table = self._bytes
        try:
            if ids and min(ids) < 0:
                raise IndexError
            return b"".join(map(table.__getitem__, ids))  # type: ignore[arg-type]
        except (IndexError, TypeError):
            bad = next((i for i in ids if not _known(i, table)), None)
            raise ValueError(
                f"token id {_plain(bad)!r} is not in this tokenizer's vocabulary "
                f"(ids are 0..{len(table) - 1})"
            ) from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Decode ``ids`` to text.

        ``decode(encode(s)) == s`` for every string. An arbitrary id sequence may cut a
        multi-byte character (a model can emit one); such bytes become U+FFFD by default,
        as in tiktoken and HF. Pass ``errors="strict"`` to get a ``UnicodeDecodeError``.
        """
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # ----------------------------------------------------------------- views

    @property
    def vocab_size(self) -> int:
        """One past the largest id: the size an embedding table needs."""
        return len(self._bytes)

    @property
    def vocab(self) -> dict[int, bytes]:
        """Ordinary token id -> bytes (a copy)."""
        return dict(self._vocab)

    @property
    def merges(self) -> list[tuple[int, int]]:
        """``(left id, right id)`` pairs in priority order (a copy)."""
        return list(self._merges)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token string -> id (a copy)."""
        return dict(self._specials)

    def with_special_tokens(self, tokens: Iterable[str]) -> BPETokenizer:
        """A copy with ``tokens`` added as special tokens at ``vocab_size``, ``vocab_size + 1``...

        Specials already present keep their ids. Their strings are never merged and, as for
        every special, become their ids only where ``encode``'s ``allowed_special`` says so.
        """
        new = new_special_tokens(tokens, existing=self._specials)
        ids = {t: self.vocab_size + k for k, t in enumerate(new)}
        specials = {**self._specials, **ids}
        return BPETokenizer(self._vocab, self._merges, self.pattern, specials, self.ignore_merges)

    @property
    def pattern_name(self) -> str | None:
        """ "gpt2" or "gpt4" when the pattern is one of those, else None (a custom regex)."""
        return bpe_pattern.name_of(self.pattern)

    def token_bytes(self, i: int) -> bytes:
        """The bytes of token ``i``."""
        return self.decode_bytes([i])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BPETokenizer):
            return NotImplemented
        return (
            self._vocab == other._vocab
            and self._merges == other._merges
            and self.pattern == other.pattern
            and self._specials == other._specials
            and self.ignore_merges == other.ignore_merges
        )

    __hash__ = None  # type: ignore[assignment]  # mutable caches inside; equality is by value

    def __repr__(self) -> str:
        pattern = self.pattern_name or self.pattern
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, "
            f"pattern={pattern!r}, special_tokens={sorted(self._specials)})"
        )

    # ----------------------------------------------------------------- files

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/tokenizer.json`` in Hugging Face's format; return its path.

        ``tokenizers.Tokenizer.from_file`` reads it and gives the same ids.
        """
        import json

        path = output_directory(directory) / TOKENIZER_FILE
        data = bpe_hf.to_tokenizer_json(self._vocab, self._merges, self.pattern, self._specials)
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a byte-level BPE tokenizer.json: ours, or one HF wrote (GPT-2's works)."""
        file, data = read_tokenizer_json(path)
        vocab, merges, pattern, specials, ignore_merges = bpe_hf.from_tokenizer_json(data, file)
        try:
            return cls(vocab, merges, pattern, specials, ignore_merges)
        except ValueError as e:
            raise ValueError(f"{file}: {e}") from None

    @classmethod
    def from_gpt2_files(
        cls,
        vocab_json: str | Path,
        merges_txt: str | Path,
        special_tokens: Iterable[str] | None = None,
    ) -> BPETokenizer:
        """Read GPT-2's ``vocab.json`` + ``merges.txt`` (the GPT-2 pattern is implied).

        Every entry is an ordinary token unless declared special: by ``special_tokens``, or
        by the Hugging Face files beside vocab.json, read as transformers reads them
        (``bpe_hf.declared_specials``; GPT-2's ``<|endoftext|>`` is special by default).
        """
        vocab, merges, specials = bpe_hf.read_gpt2_files(vocab_json, merges_txt, special_tokens)
        try:
            return cls(vocab, merges, "gpt2", specials)
        except ValueError as e:
            raise ValueError(f"{vocab_json}, {merges_txt}: {e}") from None

    def save_gpt2_files(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``vocab.json`` + ``merges.txt`` in GPT-2's format (the pattern is not stored),
        and a ``tokenizer_config.json`` that declares the special tokens."""
        return bpe_hf.write_gpt2_files(directory, self._vocab, self._merges, self._specials)

    def to_tiktoken(self, name: str = "scratchllm-bpe") -> tiktoken.Encoding:
        """This tokenizer as a ``tiktoken.Encoding`` (same ids, tiktoken's speed).

        tiktoken has no merge list: it joins any two adjacent parts whose bytes form a token,
        lowest id first. That equals merging by rank when ids grow with merge order (checked
        here; true for tokenizers trained here and for GPT-2's files) and no token can be
        formed from two parts other than its own merge's (true in practice for trained
        vocabularies; the tests hold the ids equal on real text). A hand-made vocabulary
        can break the second condition, and tiktoken then encodes some strings differently.
        """
        import tiktoken

        missing = [b for b in range(256) if self._byte_ids[b] is None]
        if missing:
            raise ValueError(
                f"tiktoken needs a token for every byte; bytes {missing[:5]} have none"
            )
        last = max(self._byte_ids)  # type: ignore[type-var]
        seen: set[int] = set()
        for rank, pair in enumerate(self._merges):
            made = self._merged[pair]
            if made in seen:
                continue
            if made <= last:
                raise ValueError(
                    f"merge #{rank} makes token {made}, but an earlier merge made a larger id "
                    f"({last}); tiktoken ranks merges by token id, so it would encode differently"
                )
            seen.add(made)
            last = made
        ranks = {t: i for i, t in self._vocab.items()}
        return tiktoken.Encoding(
            name=name,
            pat_str=self.pattern,
            mergeable_ranks=ranks,
            special_tokens=dict(self._specials),
        )


def _plain(i: object) -> object:
    """A NumPy integer as a plain int, for messages; anything else as it is."""
    try:
        return i if isinstance(i, bool) else operator.index(i)  # type: ignore[arg-type]
    except TypeError:
        return i


def _known(i: object, table: list[bytes | None]) -> bool:
    return is_token_id(i, len(table)) and table[i] is not None  # type: ignore[index]


def _check_no_surrogates(text: str) -> None:
    if not isinstance(text, str):
        raise ValueError(f"text to encode must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")  # fast (a memcpy for most text); only a lone surrogate fails
    except UnicodeEncodeError as e:
        raise ValueError(
            f"text has a lone surrogate U+{ord(text[e.start]):04X} at position {e.start}: it is "
            "not valid Unicode and has no UTF-8 bytes; fix the text (e.g. read the file with "
            "errors='replace')"
        ) from None
