"""Word vectors: look-ups, nearest neighbours, analogies, and the word2vec text format.

Similarity is the cosine. ``most_similar`` and ``analogy`` rank exactly as gensim's
``KeyedVectors.most_similar`` does: the query is the mean of the unit vectors of the
``positive`` words minus those of the ``negative`` ones, the ranking is by cosine with it, and
the query words themselves are left out. An analogy "a is to b as c is to ?" is
``positive=[b, c], negative=[a]`` (3CosAdd, Mikolov et al. 2013).

>>> wv = WordVectors(["king", "man", "woman", "queen"],
...                  np.array([[1., 1.], [1., 0.], [0., 1.], [0.1, 1.9]]))
>>> wv.analogy("man", "king", "woman")[0][0]
'queen'
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class UnknownWordError(ValueError):
    """A word that has no vector."""


class WordVectors:
    def __init__(self, words: Sequence[str], vectors: np.ndarray, counts: np.ndarray | None = None):
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(
                f"{len(words)} words need a ({len(words)}, D) matrix, got shape {vectors.shape}"
            )
        self.words = list(words)
        self.vectors = vectors
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("the vocabulary repeats a word")
        self._unit: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    def id(self, word: str) -> int:
        """The row of ``word``; an ``UnknownWordError`` naming close spellings if it has none."""
        try:
            return self.index[word]
        except KeyError:
            close = difflib.get_close_matches(word, self.words, n=3)
            hint = f"; close ones: {', '.join(close)}" if close else ""
            raise UnknownWordError(
                f"{word!r} is not in the vocabulary ({len(self)} words; words rarer than "
                f"min_count were dropped{hint})"
            ) from None

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.id(word)]

    @property
    def unit(self) -> np.ndarray:
        """(V, D) the vectors scaled to length 1 (a zero vector stays zero), computed once."""
        if self._unit is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._unit = self.vectors / np.where(norms > 0, norms, 1)
        return self._unit

    def similarity(self, a: str, b: str) -> float:
        return float(self.unit[self.id(a)] @ self.unit[self.id(b)])

    def most_similar(
        self,
        positive: str | Sequence[str] = (),
        negative: str | Sequence[str] = (),
        topn: int = 10,
    ) -> list[tuple[str, float]]:
        """The ``topn`` words nearest (by cosine) to mean(positive) - mean(negative) of the
        unit vectors, the query words excluded, as (word, cosine) best first."""
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = [negative] if isinstance(negative, str) else list(negative)
        if not positive and not negative:
            raise ValueError("most_similar needs at least one word")
        if topn < 1:
            raise ValueError(f"topn must be >= 1, got {topn}")
        rows = [self.id(w) for w in positive] + [self.id(w) for w in negative]
        weights = np.array([1.0] * len(positive) + [-1.0] * len(negative))
        query = (weights[:, None] * self.unit[rows]).mean(axis=0)
        query /= np.linalg.norm(query) or 1.0
        scores = self.unit @ query.astype(self.unit.dtype)
        scores[rows] = -np.inf  # never answer with a query word
        top = min(topn, len(self) - len(set(rows)))
        best = np.argpartition(-scores, top - 1)[:top] if top > 0 else np.array([], int)
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.words[i], float(scores[i])) for i in best]

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        """a is to b as c is to ...? (``most_similar(positive=[b, c], negative=[a])``)."""
        return self.most_similar(positive=[b, c], negative=[a], topn=topn)

    # ---- the word2vec text format ----------------------------------------------------------

    def save_word2vec_format(self, path: str | Path) -> Path:
        """Write ``V D`` then one ``word v1 ... vD`` line per word, most frequent first: the
        format of word2vec.c's ``-binary 0``, read by gensim's ``load_word2vec_format``.
        Each float is written in the fewest digits that read back to the same float32."""
        path = Path(path)
        vectors = self.vectors.astype(np.float32, copy=False)
        with path.open("w", encoding="utf-8", newline="\n") as f:
            f.write(f"{len(self)} {self.vector_size}\n")
            for word, row in zip(self.words, vectors, strict=True):
                f.write(word + " " + " ".join(map(str, row)) + "\n")
        return path

    @classmethod
    def load_word2vec_format(
        cls, path: str | Path, counts: np.ndarray | None = None
    ) -> WordVectors:
        """Read a file ``save_word2vec_format`` (or word2vec.c, or gensim) wrote in text."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no word vectors file {path}")
        with path.open("r", encoding="utf-8") as f:
            header = f.readline().split()
            if len(header) != 2 or not all(h.isdigit() for h in header):
                raise ValueError(
                    f"{path}, line 1: expected the header 'WORDS DIMENSIONS', got "
                    f"{' '.join(header)[:60]!r}: not a word2vec text file"
                )
            n, dim = int(header[0]), int(header[1])
            words, vectors = [], np.empty((n, dim), dtype=np.float32)
            for i, line in enumerate(f):
                if i >= n:
                    raise ValueError(
                        f"{path}, line {i + 2}: the header says {n} words, but the file goes on"
                    )
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if len(parts) != dim + 1:
                    raise ValueError(f"{path}, line {i + 2}: expected a word and {dim} numbers")
                try:
                    vectors[i] = [float(v) for v in parts[1:]]
                except ValueError:
                    raise ValueError(f"{path}, line {i + 2}: a value is not a number") from None
                words.append(parts[0])
        if len(words) != n:
            raise ValueError(f"{path}: the header says {n} words but the file has {len(words)}")
        return cls(words, vectors, counts)
