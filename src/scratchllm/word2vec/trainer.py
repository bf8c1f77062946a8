"""Train word2vec: vocabulary, then ``epochs`` passes of batched SGD over the corpus.

Each epoch, as gensim and word2vec.c do:

1. **Subsample**: every occurrence of word ``w`` survives with ``keep_probabilities`` (the
   dropped ones vanish before windows are drawn, so the windows reach further).
2. **Shrink windows**: each surviving position draws ``b`` uniformly from ``0..window-1``
   and uses the half-width ``window - b`` (so near neighbours are trained with more often).
3. **Step** through the positions a batch of centres at a time (``cbow.py``,
   ``skipgram.py``), ``negative`` noise words per centre, at the learning rate
   ``alpha -> min_alpha`` decayed linearly in the words read (all epochs together; the clock
   is the raw word count, unknown words included, as gensim's).

**How big a batch.** A batch sums its gradients at the same parameters; word2vec.c applies
each at once, so the next one already sees the change. The two agree while a vector gets
few updates per batch. A vector that gets many *similar* updates in one batch takes one step
as large as all of them together, where sequential SGD would have slowed down as the
sigmoid saturated. Mildly, that inflates the busiest vectors (the output vectors of the
most frequent words); past a point the vectors grow without bound. ``batch_centres``
shrinks the batch until the busiest input vector expects at most ``INPUT_UPDATES = 128``
updates per batch and the busiest output vector (usually that of "the", drawn as noise in
2-3% of draws in English) at most ``OUTPUT_UPDATES = 96``. On the 16-word, two-topic toy
corpus (the worst case) skip-gram diverges from ~430 updates per output vector per batch
and CBOW from ~190 per input vector; on Wikipedia, skip-gram's output vectors end ~3%
longer than gensim's at 128 centres per batch (96 updates), ~8% at 343 (256 updates).
English text gets ~100-130 centres per batch for skip-gram, ``batch_size`` (512) for CBOW.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .cbow import cbow_step
from .config import Word2VecConfig
from .corpus import check_sentences
from .skipgram import sg_step
from .vectors import WordVectors
from .vocab import (
    Vocab,
    build_vocab,
    draw_noise,
    keep_probabilities,
    noise_buckets,
    noise_table,
)
from .windows import Workspace, window_mask

INPUT_UPDATES = 128  # the most updates the busiest input vector may expect per batch
OUTPUT_UPDATES = 96  # the same for the busiest output vector
CHUNK = 16384  # centres whose windows and noise words are drawn in one go
CBOW_NOISE_GROUP = 4  # consecutive CBOW centres sharing one noise draw (cbow.py)


@dataclass
class Word2VecModel:
    config: Word2VecConfig
    vocab: Vocab
    vectors: np.ndarray  # (V, D) float32: the input vectors, the word vectors people use
    output_vectors: np.ndarray  # (V, D) float32: gensim's syn1neg
    epoch_losses: list[float] = field(default_factory=list)  # mean loss per training example
    trained_words: list[int] = field(default_factory=list)  # positions left after subsampling
    examples: list[int] = field(default_factory=list)  # (input, true word) examples per epoch
    batch_centres: int = 0  # centre words per batch, as batch_centres chose
    seconds: float = 0.0

    @property
    def wv(self) -> WordVectors:
        return WordVectors(self.vocab.words, self.vectors, self.vocab.counts)


@dataclass
class Stream:
    """The corpus as word ids: the in-vocabulary words in order, each with its sentence."""

    ids: np.ndarray  # (n,) int32
    sentence: np.ndarray  # (n,) int32  sentence number of each word
    raw_start: np.ndarray  # (sentences + 1,) int64  raw words before each sentence


def encode(sentences: Iterable[list[str]], vocab: Vocab) -> Stream:
    """One pass over ``sentences``: ids of the vocabulary words (the rest are dropped)."""
    index = vocab.index
    ids, sent, raw = array("i"), array("i"), array("q", [0])
    for number, sentence in enumerate(sentences):
        kept = [index[w] for w in sentence if w in index]
        ids.extend(kept)
        sent.extend([number] * len(kept))
        raw.append(raw[-1] + len(sentence))
    return Stream(
        np.frombuffer(ids, dtype=np.int32).copy(),
        np.frombuffer(sent, dtype=np.int32).copy(),
        np.frombuffer(raw, dtype=np.int64).copy(),
    )


def initial_vectors(n_words: int, vector_size: int, seed: int) -> np.ndarray:
    """gensim's ``prep_vectors``: uniform in [-1, 1) / vector_size, float32."""
    vectors = np.random.default_rng(seed=seed).random((n_words, vector_size), dtype=np.float32)
    vectors *= 2.0
    vectors -= 1.0
    vectors /= vector_size
    return vectors


def train(
    sentences: Iterable[list[str]],
    config: Word2VecConfig | None = None,
    progress: bool = False,
) -> Word2VecModel:
    """Train on ``sentences`` (a re-iterable of lists of words, e.g. a ``LineCorpus``).

    >>> corpus = [["the", "cat", "sat"], ["the", "dog", "sat"]] * 50
    >>> model = train(corpus, Word2VecConfig(vector_size=8, min_count=1, epochs=2))
    >>> model.vocab.words, model.vectors.shape
    (['sat', 'the', 'dog', 'cat'], (4, 8))
    """
    cfg = config or Word2VecConfig()
    check_sentences(sentences)
    start = time.perf_counter()
    vocab = build_vocab(sentences, cfg.min_count, cfg.max_vocab_size, cfg.max_final_vocab)
    stream = encode(sentences, vocab)
    model = Word2VecModel(
        cfg,
        vocab,
        initial_vectors(len(vocab), cfg.vector_size, cfg.seed),
        np.zeros((len(vocab), cfg.vector_size), dtype=np.float32),
    )
    keep = keep_probabilities(vocab.counts, cfg.sample)[stream.ids]  # (n,) per position
    table = noise_table(vocab.counts, cfg.ns_exponent).astype(np.int64)
    sampler = table, noise_buckets(table)  # the table, and a lookup that speeds up drawing
    rng = np.random.default_rng((cfg.seed, 1))
    group = 1 if cfg.sg else CBOW_NOISE_GROUP
    model.batch_centres = max(group, batch_centres(cfg, vocab.counts) // group * group)
    bar = _progress_bar(cfg.epochs * vocab.total_words, progress)  # its clock: raw words read
    try:
        for epoch in range(cfg.epochs):
            loss, examples, words = _epoch(model, stream, keep, sampler, rng, epoch, bar)
            if not np.isfinite(loss):
                raise ValueError(
                    f"training diverged in epoch {epoch + 1} (the loss is {loss}): lower "
                    f"alpha (now {cfg.alpha}) or batch_size (now {model.batch_centres})"
                )
            model.epoch_losses.append(loss / max(examples, 1))
            model.trained_words.append(words)
            model.examples.append(examples)
            if bar is not None:
                bar.update((epoch + 1) * vocab.total_words - bar.n)
                bar.set_postfix(epoch=epoch + 1, loss=f"{model.epoch_losses[-1]:.4f}")
    finally:
        if bar is not None:
            bar.close()
    model.seconds = time.perf_counter() - start
    return model


def batch_centres(cfg: Word2VecConfig, counts: np.ndarray) -> int:
    """Centres per batch: ``cfg.batch_size``, lowered so that no vector expects more updates
    per batch than ``INPUT_UPDATES`` / ``OUTPUT_UPDATES`` (see the module docstring).

    Per centre, word ``u`` is the centre with probability ``p_u`` (its share of the
    subsampled corpus) and a noise word ``negative`` times with probability ``q_u``; each
    centre has ``window + 1`` neighbours on average (``2 window`` unshrunk). So per centre its
    output vector expects ``p_u + negative q_u`` updates in CBOW and ``window + 1`` times as
    many in skip-gram (one per neighbour), its input vector ``(window + 1) p_u`` in both.

    >>> batch_centres(Word2VecConfig(sg=1), np.full(16, 100))   # 16 equally common words
    42
    """
    counts = np.asarray(counts, dtype=np.float64)
    kept = counts * keep_probabilities(counts, cfg.sample)
    p = kept / kept.sum()
    q = counts**cfg.ns_exponent
    q /= q.sum()
    neighbours = cfg.window + 1 if cfg.shrink_windows else 2 * cfg.window
    per_output = float(((p + cfg.negative * q) * (neighbours if cfg.sg else 1)).max())
    per_input = neighbours * float(p.max())
    largest = min(OUTPUT_UPDATES / per_output, INPUT_UPDATES / per_input)
    return int(min(cfg.batch_size, max(1, largest)))


def learning_rate(cfg: Word2VecConfig, progress: float) -> float:
    """``alpha`` at ``progress`` 0 (the first word) falling linearly to ``min_alpha`` at 1.

    >>> learning_rate(Word2VecConfig(), 0.5)
    0.01255
    """
    return max(cfg.min_alpha, cfg.alpha - (cfg.alpha - cfg.min_alpha) * progress)


def _epoch(model, stream, keep, sampler, rng, epoch, bar) -> tuple[float, int, int]:
    cfg, W, B = model.config, model.config.window, model.batch_centres
    kept = rng.random(len(stream.ids)) < keep
    ids, sentence = stream.ids[kept], stream.sentence[kept]
    n = len(ids)
    if cfg.shrink_windows:
        half = W - rng.integers(0, W, size=n, dtype=np.int32)
    else:
        half = np.full(n, W, dtype=np.int32)
    ids_pad = np.concatenate([np.zeros(W, np.int32), ids, np.zeros(W, np.int32)])
    sent_pad = np.concatenate([np.full(W, -1, np.int32), sentence, np.full(W, -1, np.int32)])
    total_loss, examples = 0.0, 0
    G = 1 if cfg.sg else CBOW_NOISE_GROUP  # B is a whole number of noise groups
    ws = Workspace(B, W, cfg.negative, cfg.vector_size, group=G)
    chunk = max(B, CHUNK // B * B)  # a whole number of batches
    for c in range(0, n, chunk):  # windows and noise for many batches per NumPy call
        d = min(c + chunk, n)
        masks = window_mask(sent_pad, half, c, d, W)  # (d-c, 2W+1)
        size = (-(-(d - c) // G), cfg.negative)  # a row per group
        noises = draw_noise(rng, sampler[0], size, sampler[1])
        examples += int(masks.sum()) if cfg.sg else int(np.count_nonzero(masks.any(axis=1)))
        for a in range(c, d, B):
            b = min(a + B, d)
            read = int(stream.raw_start[sentence[a]])  # raw words before this batch's sentence
            alpha = learning_rate(cfg, (epoch + read / model.vocab.total_words) / cfg.epochs)
            mask, halo = masks[a - c : b - c], ids_pad[a : b + 2 * W]
            noise = noises[(a - c) // G : -(-(b - c) // G)]
            if cfg.sg:
                total_loss += sg_step(
                    model.vectors, model.output_vectors, halo, noise, mask, alpha, ws
                )
            else:
                total_loss += cbow_step(
                    model.vectors,
                    model.output_vectors,
                    halo,
                    noise,
                    mask,
                    alpha,
                    cfg.cbow_mean,
                    G,
                    ws,
                )
            if bar is not None:
                bar.update(epoch * model.vocab.total_words + read - bar.n)
    return total_loss, examples, n


def _progress_bar(total: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="word", unit_scale=True, desc="word2vec")
