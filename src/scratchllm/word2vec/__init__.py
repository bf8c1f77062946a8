"""word2vec from scratch in NumPy: skip-gram and CBOW with negative sampling, held to gensim.

- ``corpus``: text to sentences of words (the word tokenizer's words, lowercased).
- ``vocab``: counting, pruning and ordering exactly as gensim; subsampling and noise tables.
- ``loss``: the negative-sampling loss and its gradient.
- ``windows``, ``cbow``, ``skipgram``: one batched SGD step of each model.
- ``train``: the epochs and the learning-rate schedule; ``vectors``: neighbours, analogies
  and the word2vec text format; ``store``: a trained model's directory.
- ``embeddings``: word2vec vectors as a GPT's initial token embeddings.

>>> corpus = [["the", "cat", "sat"], ["the", "dog", "sat"]] * 50
>>> model = train(corpus, Word2VecConfig(vector_size=8, min_count=1, epochs=2, seed=0))
>>> model.wv.most_similar("cat", topn=1)[0][0] in {"dog", "the", "sat"}
True

Nothing in this package imports torch.
"""

from .config import Word2VecConfig
from .corpus import LineCorpus, tokenize
from .embeddings import EmbeddingInit, token_embeddings
from .store import SavedWord2Vec, load, save
from .trainer import Word2VecModel, train
from .vectors import UnknownWordError, WordVectors
from .vocab import Vocab, build_vocab

__all__ = [
    "EmbeddingInit",
    "LineCorpus",
    "SavedWord2Vec",
    "UnknownWordError",
    "Vocab",
    "Word2VecConfig",
    "Word2VecModel",
    "WordVectors",
    "build_vocab",
    "load",
    "save",
    "token_embeddings",
    "tokenize",
    "train",
]
