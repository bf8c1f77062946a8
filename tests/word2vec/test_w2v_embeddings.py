"""word2vec vectors as a GPT's initial token embeddings: which rows, what geometry, what scale."""

from __future__ import annotations

import numpy as np
import pytest

from scratchllm.tokenizers import WordTokenizer
from scratchllm.word2vec import WordVectors, token_embeddings

TEXT = "The cat sat on the mat. A dog sat on a log, and the cat saw the dog! Zebra?"


@pytest.fixture
def setup():
    tok = WordTokenizer.train(TEXT)  # case kept: "The" and "the" are different tokens
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "log", "and", "saw", "unused"]
    vectors = WordVectors(words, np.random.default_rng(0).normal(2.0, 1.5, size=(11, 6)))
    init = np.random.default_rng(1).normal(0, 0.02, size=(tok.vocab_size, 6)).astype(np.float32)
    return tok, vectors, init


def cosines(m):
    u = m / np.linalg.norm(m, axis=1, keepdims=True)
    return u @ u.T


def test_rows_with_a_vector_change_the_rest_keep_the_init(setup):
    tok, vectors, init = setup
    result = token_embeddings(vectors, tok, init)
    has = {tok.id_to_token(i) for i in np.flatnonzero(result.found)}
    assert has == {"The", "the", "cat", "sat", "on", "mat", "A", "a", "dog", "log", "and", "saw"}
    kept = ~result.found  # specials, punctuation, spaces, "Zebra"
    np.testing.assert_array_equal(result.matrix[kept], init[kept])
    assert not result.found[:4].any() and tok.token_to_id("Zebra") in np.flatnonzero(kept)
    # "The" falls back to the lowercase word's vector
    the, The = tok.token_to_id("the"), tok.token_to_id("The")
    np.testing.assert_array_equal(result.matrix[The], result.matrix[the])
    assert result.coverage == pytest.approx(result.found.mean())
    assert result.matrix.dtype == np.float32


def test_same_width_keeps_the_centred_geometry_at_the_init_scale(setup):
    tok, vectors, init = setup
    result = token_embeddings(vectors, tok, init)
    assert result.projection == "none"
    rows = np.flatnonzero(result.found)
    words = [tok.id_to_token(i).lower() for i in rows]
    source = vectors.vectors[[vectors.index[w] for w in words]]
    centred = source - source.mean(axis=0)
    np.testing.assert_allclose(cosines(result.matrix[rows]), cosines(centred), atol=1e-5)
    assert result.matrix[rows].std() == pytest.approx(init.std(), rel=1e-4)
    assert abs(vectors.vectors.mean()) > 1  # the source really had a large common offset


def test_a_narrower_model_gets_the_principal_components(setup):
    tok, vectors, _ = setup
    init = np.random.default_rng(2).normal(0, 0.02, size=(tok.vocab_size, 3))
    result = token_embeddings(vectors, tok, init)
    assert result.projection == "pca"
    rows = np.flatnonzero(result.found)
    y = vectors.vectors[[vectors.index[tok.id_to_token(i).lower()] for i in rows]]
    y = y - y.mean(axis=0)
    _, axes = np.linalg.eigh(y.T @ y)  # ascending eigenvalues: the last 3 are the top ones
    expected = y @ axes[:, ::-1][:, :3]
    got = result.matrix[rows].astype(np.float64)
    for k in range(3):  # each component up to its sign, and the common rescaling
        c = np.corrcoef(got[:, k], expected[:, k])[0, 1]
        assert abs(c) > 1 - 1e-5


def test_a_wider_model_gets_an_isometry(setup):
    tok, vectors, _ = setup
    init = np.random.default_rng(2).normal(0, 0.02, size=(tok.vocab_size, 16))
    result = token_embeddings(vectors, tok, init, seed=4)
    assert result.projection == "orthonormal"
    rows = np.flatnonzero(result.found)
    y = vectors.vectors[[vectors.index[tok.id_to_token(i).lower()] for i in rows]]
    y = y - y.mean(axis=0)

    def distances(m):
        return np.linalg.norm(m[:, None] - m[None], axis=-1)

    pairs = np.triu_indices(len(rows), 1)
    before, after = distances(y)[pairs], distances(result.matrix[rows])[pairs]
    apart = before > 0  # "The" and "the" share a vector
    ratio = after[apart] / before[apart]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)  # every distance scaled alike
    assert (after[~apart] < 1e-6).all()
    again = token_embeddings(vectors, tok, init, seed=4).matrix
    other = token_embeddings(vectors, tok, init, seed=5).matrix
    np.testing.assert_array_equal(again, result.matrix)
    assert not np.allclose(other[rows], result.matrix[rows])


def test_mismatched_shapes_and_no_overlap_are_clear_errors(setup):
    tok, vectors, init = setup
    with pytest.raises(ValueError, match="must be .vocab_size=.*was the model built"):
        token_embeddings(vectors, tok, init[:-1])
    foreign = WordVectors(["hund", "katze"], np.ones((2, 6)))
    with pytest.raises(ValueError, match="no token of the tokenizer has a word2vec vector"):
        token_embeddings(foreign, tok, init)
