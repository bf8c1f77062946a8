"""word2vec vectors as a GPT's initial token embeddings, for a ``WordTokenizer`` vocabulary.

Each token of the tokenizer gets the vector of the same word, or failing that of its
lowercase form (word2vec trains on lowercased words by default, the word tokenizer keeps
case unless told otherwise). Tokens with neither, the special tokens and the punctuation
and whitespace tokens word2vec never sees, keep the model's own initial rows.

The found vectors (n, d) become rows of width ``C = n_embd`` in three steps:

1. **Centre** them (subtract their mean). word2vec vectors share a large common direction
   that carries word frequency more than meaning (Mu & Viswanath 2018, "All-but-the-Top");
   the model's own initialisation is zero-mean too.
2. **Project** when ``d != C``:

   - ``C < d``: onto the top ``C`` principal axes (PCA by SVD). Of all linear maps to ``C``
     dimensions this keeps the most of the vectors' variance (Eckart-Young), so the
     neighbourhoods change least; a random projection would keep distances only
     approximately and throws away information PCA keeps.
   - ``C > d``: through a fixed random matrix with orthonormal rows (``d x C``, from the QR
     of a seeded Gaussian): an isometry, so every distance and angle is kept exactly, and the
     vectors spread over all ``C`` coordinates instead of leaving ``C - d`` of them zero.
3. **Rescale** to the standard deviation of the model's initial embedding (GPT: 0.02).
   Cosines do not change; the scale the model's optimiser, LayerNorm and tied output head
   were tuned for does (word2vec vectors are ~100x larger).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vectors import WordVectors


@dataclass
class EmbeddingInit:
    matrix: np.ndarray  # (vocab_size, n_embd) float32: the new token-embedding matrix
    found: np.ndarray  # (vocab_size,) bool: which rows came from word2vec
    projection: str  # "none", "pca" or "orthonormal"

    @property
    def coverage(self) -> float:
        """The fraction of the tokenizer's tokens that got a word2vec vector."""
        return float(self.found.mean())


def token_embeddings(
    vectors: WordVectors, tokenizer, init: np.ndarray, seed: int = 0
) -> EmbeddingInit:
    """The token-embedding matrix for ``tokenizer`` (a ``WordTokenizer``) from ``vectors``.

    ``init`` (vocab_size, n_embd) is the model's current embedding: its rows are kept for
    tokens without a vector and its standard deviation sets the scale. ``seed`` fixes the
    orthonormal map used when n_embd is larger than the vectors.
    """
    init = np.asarray(init)
    if init.ndim != 2 or init.shape[0] != tokenizer.vocab_size:
        raise ValueError(
            f"the embedding matrix must be (vocab_size={tokenizer.vocab_size}, n_embd), "
            f"got shape {init.shape}: was the model built for this tokenizer?"
        )
    rows, sources = [], []
    for token_id in range(tokenizer.vocab_size):
        word = _find(vectors, tokenizer.id_to_token(token_id))
        if word is not None:
            rows.append(token_id)
            sources.append(vectors.index[word])
    if not rows:
        raise ValueError(
            "no token of the tokenizer has a word2vec vector: were the vectors trained on "
            "text in the same language (and is the tokenizer a word tokenizer)?"
        )
    y = vectors.vectors[sources].astype(np.float64)
    y -= y.mean(axis=0)
    z, projection = _project(y, init.shape[1], seed)
    spread = z.std()
    target = init.std()
    if spread > 0 and target > 0:
        z *= target / spread
    matrix = init.astype(np.float32, copy=True)
    matrix[rows] = z
    found = np.zeros(tokenizer.vocab_size, dtype=bool)
    found[rows] = True
    return EmbeddingInit(matrix, found, projection)


def _find(vectors: WordVectors, token: str) -> str | None:
    if token in vectors.index:
        return token
    lower = token.lower()
    return lower if lower in vectors.index else None


def _project(y: np.ndarray, width: int, seed: int) -> tuple[np.ndarray, str]:
    """(n, d) centred vectors to (n, width): as they are, PCA, or an orthonormal map."""
    d = y.shape[1]
    if width == d:
        return y, "none"
    if width < d:
        _, _, vt = np.linalg.svd(y, full_matrices=False)  # rows of vt: principal axes
        z = y @ vt[:width].T  # fewer than `width` columns only if there are fewer vectors
        return np.pad(z, ((0, 0), (0, width - z.shape[1]))), "pca"
    gaussian = np.random.default_rng(seed).standard_normal((width, d))
    q, _ = np.linalg.qr(gaussian)  # (width, d) with orthonormal columns
    return y @ q.T, "orthonormal"
