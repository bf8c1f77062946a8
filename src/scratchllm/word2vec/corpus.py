"""Text to sentences of words: one line is one sentence, words as the word tokenizer splits them.

A word is a run of letters, combining marks, digits and ``_``: exactly the word pre-tokens
of ``scratchllm.tokenizers.word`` (its ``pre_tokenize``), with the punctuation and whitespace
pre-tokens dropped. By default the text is lowercased first, so

>>> tokenize("Hello, World! It's 2024.")
['hello', 'world', 'it', 's', '2024']

gensim's ``simple_preprocess`` (what its own tests feed word2vec) differs in three ways on
the same line: it drops digits, and tokens shorter than 2 or longer than 15 characters
(``['hello', 'world', 'it']`` here). Training compares the two trainers on identical
sentences, so the choice changes what both learn, not how they compare.

As gensim's ``LineSentence`` does, a line of more than ``MAX_SENTENCE_WORDS`` words is cut
into sentences of at most that many (gensim's trainer would silently drop the rest).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

import regex

from scratchllm.tokenizers.word import normalize, pre_tokenize

MAX_SENTENCE_WORDS = 10_000  # gensim's MAX_WORDS_IN_BATCH, word2vec.c's MAX_SENTENCE_LENGTH


@functools.cache
def _word_start() -> regex.Pattern:
    return regex.compile(r"[\p{L}\p{M}\p{N}_]")  # the first character of a word pre-token


def tokenize(line: str, lowercase: bool = True, nfkc: bool = False) -> list[str]:
    """The words of ``line`` (see the module docstring); ``nfkc`` applies Unicode NFKC first."""
    is_word = _word_start().match
    return [t for t in pre_tokenize(normalize(line, lowercase, nfkc)) if is_word(t)]


def split_long(words: list[str], limit: int = MAX_SENTENCE_WORDS) -> Iterator[list[str]]:
    """``words`` in consecutive pieces of at most ``limit`` (nothing for an empty list)."""
    for start in range(0, len(words), limit):
        yield words[start : start + limit]


class LineCorpus:
    """The sentences of a UTF-8 text file, read afresh on each iteration (vocabulary counting
    and every epoch each make one pass), so the file never has to fit in memory as words.

    Empty lines give no sentence. A line that is not UTF-8 is a ``ValueError`` naming the
    file and the line.
    """

    def __init__(self, path: str | Path, lowercase: bool = True, nfkc: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"corpus file {self.path} does not exist (or is not a file)")
        self.lowercase = lowercase
        self.nfkc = nfkc

    def __iter__(self) -> Iterator[list[str]]:
        with self.path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(
                        f"{self.path}, line {number}: not UTF-8 ({e.reason} at byte "
                        f"{e.start}); re-encode the file as UTF-8"
                    ) from None
                yield from split_long(tokenize(line, self.lowercase, self.nfkc))


def check_sentences(sentences: Iterable[list[str]]) -> None:
    """Clear errors for the common mistakes: one string, sentences that are strings, or a
    one-shot iterator (training reads the sentences once per epoch, plus once to count)."""
    if isinstance(sentences, str):
        raise ValueError("sentences must be an iterable of lists of words, not one string")
    if iter(sentences) is sentences:
        raise ValueError(
            "sentences must be re-iterable (a list of lists of words, or a LineCorpus): "
            "training reads them once per epoch, and a generator is used up after one pass"
        )
    for sentence in sentences:
        if isinstance(sentence, str):
            raise ValueError(
                "each sentence must be a list of words, got a string; use "
                "scratchllm.word2vec.tokenize(line) to split a line into words"
            )
        return  # only the first is looked at: the check must not cost a pass
