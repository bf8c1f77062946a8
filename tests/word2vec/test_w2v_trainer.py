"""Training as a whole: seeded, subsampled and windowed as word2vec.c, learning real structure,
and never touching torch."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scratchllm.word2vec import Word2VecConfig, train
from scratchllm.word2vec.trainer import learning_rate
from scratchllm.word2vec.vocab import build_vocab, keep_probabilities

MODULES = [
    "config",
    "corpus",
    "vocab",
    "loss",
    "windows",
    "cbow",
    "skipgram",
    "trainer",
    "vectors",
    "store",
    "embeddings",
]


def test_the_docstring_examples_hold():
    for name in ["", *(f".{m}" for m in MODULES)]:
        module = importlib.import_module(f"scratchllm.word2vec{name}")
        result = doctest.testmod(module)
        assert result.failed == 0, name


def clusters(seed=0, n_sentences=300):
    """Sentences that each use the words of one of two disjoint topics."""
    rng = np.random.default_rng(seed)
    topics = [[f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]]
    picks = [rng.choice(topics[rng.integers(2)], size=8) for _ in range(n_sentences)]
    return [[str(w) for w in words] for words in picks]


@pytest.mark.parametrize("sg, cbow_mean", [(1, 1), (0, 1), (0, 0)])
def test_neighbours_share_a_topic(sg, cbow_mean):
    cfg = Word2VecConfig(
        vector_size=16, sg=sg, cbow_mean=cbow_mean, min_count=1, sample=0, epochs=5, seed=3
    )
    model = train(clusters(), cfg)
    wv = model.wv
    for word in wv.words:
        neighbours = [w for w, _ in wv.most_similar(word, topn=5)]
        assert all(w[0] == word[0] for w in neighbours), (word, neighbours)
    assert model.epoch_losses[-1] < model.epoch_losses[0]


def test_a_seed_fixes_every_draw():
    cfg = Word2VecConfig(vector_size=8, min_count=1, epochs=2, seed=5)
    first, again = train(clusters(), cfg), train(clusters(), cfg)
    np.testing.assert_array_equal(first.vectors, again.vectors)
    other = train(clusters(), Word2VecConfig(vector_size=8, min_count=1, epochs=2, seed=6))
    assert not np.allclose(first.vectors, other.vectors)
    assert first.vectors.dtype == np.float32 and first.output_vectors.dtype == np.float32


def test_learning_rate_falls_linearly_from_alpha_to_min_alpha():
    cfg = Word2VecConfig(alpha=0.05, min_alpha=0.001)
    assert learning_rate(cfg, 0.0) == 0.05
    assert learning_rate(cfg, 0.25) == pytest.approx(0.05 - 0.049 / 4)
    assert learning_rate(cfg, 1.0) == pytest.approx(0.001)
    assert learning_rate(cfg, 1.5) == 0.001  # never below min_alpha


def test_subsampling_keeps_the_expected_number_of_words(lee):
    cfg = Word2VecConfig(vector_size=8, epochs=4, sample=1e-4, sg=0)
    model = train(lee, cfg)
    vocab = build_vocab(lee)
    p = keep_probabilities(vocab.counts, cfg.sample)
    mean, var = (vocab.counts * p).sum(), (vocab.counts * p * (1 - p)).sum()
    assert mean < 0.7 * vocab.retained_words  # subsampling really bites at 1e-4
    for kept in model.trained_words:
        assert abs(kept - mean) < 4 * np.sqrt(var)


def test_windows_shrink_as_word2vec_c_draws_them():
    n, W = 4000, 4
    corpus = [[f"w{i % 50}" for i in range(n)][s : s + 1000] for s in range(0, n, 1000)]
    fixed = Word2VecConfig(
        vector_size=4, window=W, min_count=1, sample=0, epochs=1, sg=1, shrink_windows=False
    )
    # every word of a 1000-word sentence has 2W neighbours but the W nearest each end
    assert train(corpus, fixed).examples == [4 * (1000 * 2 * W - W * (W + 1))]
    shrunk = train(corpus, Word2VecConfig(**{**fixed.to_dict(), "shrink_windows": True}))
    # the half-width is uniform in 1..W: 2 * (W + 1) / 2 = W + 1 neighbours on average
    assert shrunk.examples[0] / n == pytest.approx(W + 1, rel=0.03)


def test_strings_and_generators_are_clear_errors():
    with pytest.raises(ValueError, match="not one string"):
        train("the cat sat")
    with pytest.raises(ValueError, match="got a string"):
        train(["the cat sat", "a dog"])
    with pytest.raises(ValueError, match="re-iterable"):
        train(s for s in [["a", "b"]])


def test_the_package_trains_and_runs_its_cli_with_torch_unimportable(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        from scratchllm.cli import main
        from scratchllm.word2vec import Word2VecConfig, train
        data = {str(tmp_path / "c.txt")!r}
        open(data, "w").write("the cat sat on the mat\\n" * 40)
        train([["a", "b"]] * 5, Word2VecConfig(vector_size=4, min_count=1, epochs=1))
        assert main(["word2vec", "train", "--data", data, "--out", {str(tmp_path / "v")!r},
                     "--min-count", "1", "--vector-size", "4", "--quiet"]) == 0
        assert main(["word2vec", "similar", {str(tmp_path / "v")!r}, "cat"]) == 0
        print("imported:", sorted(m for m in sys.modules if m.startswith(("torch", "gensim"))))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "imported: ['torch']" in done.stdout  # only the blocker itself; no gensim either
