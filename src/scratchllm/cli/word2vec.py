"""`scratchllm word2vec`: train word vectors from scratch (NumPy), then query them.

scratchllm word2vec train --data corpus.txt --out vecs/ --sg 1   # flags named as gensim's
scratchllm word2vec similar vecs/ king --topn 5                   # nearest words by cosine
scratchllm word2vec analogy vecs/ man king woman                  # man : king :: woman : ?

Nothing this verb runs imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scratchllm.word2vec.config import Word2VecConfig

_D = Word2VecConfig()  # the defaults, gensim's, in one place


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = subparsers.add_parser(
        "word2vec",
        help="train word2vec vectors (NumPy, no ML library); nearest words, analogies",
        description="word2vec from scratch in NumPy: skip-gram or CBOW with negative "
        "sampling, held to gensim's results. Training writes DIR/vectors.txt (the word2vec "
        "text format gensim's KeyedVectors.load_word2vec_format reads), DIR/vocab.txt and "
        "DIR/word2vec.json.",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="w2v_command", metavar="<command>", required=True)

    t = sub.add_parser(
        "train",
        help="train vectors on a text file",
        description="Train word vectors on a UTF-8 text file, one sentence per line. Words "
        "are the word tokenizer's words (letters, digits, _), lowercased by default, "
        "punctuation dropped. Options are gensim's Word2Vec parameters, with its defaults.",
        formatter_class=fmt,
    )
    t.add_argument("--data", type=Path, required=True, help="UTF-8 text file (required)")
    t.add_argument("--out", type=Path, required=True, help="directory to write (required)")
    t.add_argument("--vector-size", type=int, default=_D.vector_size, help="dimensions")
    t.add_argument("--sg", type=int, choices=(0, 1), default=_D.sg, help="1 skip-gram, 0 CBOW")
    t.add_argument("--window", type=int, default=_D.window, help="largest neighbour distance")
    t.add_argument("--min-count", type=int, default=_D.min_count, help="drop rarer words")
    t.add_argument(
        "--max-final-vocab",
        "--max-vocab",
        dest="max_final_vocab",
        type=int,
        metavar="N",
        help="keep at most N words, raising --min-count as gensim does (ties are never "
        "split, so fewer may stay). Default: no cap",
    )
    t.add_argument(
        "--max-vocab-size",
        type=int,
        metavar="N",
        help="while counting, prune rare words whenever more than N distinct ones are held "
        "(gensim's memory guard). Default: no pruning",
    )
    t.add_argument("--negative", type=int, default=_D.negative, help="noise words per example")
    t.add_argument("--ns-exponent", type=float, default=_D.ns_exponent, help="noise: count^this")
    t.add_argument(
        "--sample", type=float, default=_D.sample, help="frequent-word subsampling; 0 off"
    )
    t.add_argument("--epochs", type=int, default=_D.epochs, help="passes over the corpus")
    t.add_argument("--alpha", type=float, default=_D.alpha, help="initial learning rate")
    t.add_argument("--min-alpha", type=float, default=_D.min_alpha, help="final learning rate")
    t.add_argument(
        "--cbow-mean", type=int, choices=(0, 1), default=_D.cbow_mean, help="CBOW: 1 mean, 0 sum"
    )
    t.add_argument("--seed", type=int, default=_D.seed, help="random seed")
    t.add_argument(
        "--batch-size",
        type=int,
        default=_D.batch_size,
        help="centre words per vectorised update (ours: gensim updates one at a time)",
    )
    t.add_argument("--no-lowercase", action="store_true", help="keep the text's case")
    t.add_argument("--nfkc", action="store_true", help="apply Unicode NFKC before splitting")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    s = sub.add_parser(
        "similar",
        help="the words nearest to a word",
        description="Print the words nearest to WORD by cosine similarity, best first.",
        formatter_class=fmt,
    )
    s.add_argument("dir", type=Path, metavar="DIR", help="a directory `word2vec train` wrote")
    s.add_argument("word", metavar="WORD")
    s.add_argument("--topn", type=int, default=10, help="how many words")
    s.set_defaults(func=_similar)

    a = sub.add_parser(
        "analogy",
        help="a is to b as c is to ?",
        description="Answer 'A is to B as C is to ?' with the words nearest to "
        "B - A + C (on unit vectors, the inputs left out), as gensim's most_similar does.",
        formatter_class=fmt,
    )
    a.add_argument("dir", type=Path, metavar="DIR", help="a directory `word2vec train` wrote")
    a.add_argument("a", metavar="A")
    a.add_argument("b", metavar="B")
    a.add_argument("c", metavar="C")
    a.add_argument("--topn", type=int, default=5, help="how many candidates")
    a.set_defaults(func=_analogy)


def _train(args: argparse.Namespace) -> int:
    from scratchllm.word2vec import LineCorpus, save, train

    cfg = Word2VecConfig(
        vector_size=args.vector_size,
        sg=args.sg,
        cbow_mean=args.cbow_mean,
        window=args.window,
        negative=args.negative,
        ns_exponent=args.ns_exponent,
        min_count=args.min_count,
        max_vocab_size=args.max_vocab_size,
        max_final_vocab=args.max_final_vocab,
        sample=args.sample,
        alpha=args.alpha,
        min_alpha=args.min_alpha,
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    lowercase = not args.no_lowercase
    corpus = LineCorpus(args.data, lowercase=lowercase, nfkc=args.nfkc)
    model = train(corpus, cfg, progress=not args.quiet)
    out = save(model, args.out, lowercase, args.nfkc, extra={"data": str(args.data)})
    vocab = model.vocab
    print(
        f"vocabulary: {len(vocab)} words seen >= {vocab.min_count} times, "
        f"{vocab.retained_words} of the {vocab.total_words} words in {vocab.sentences} lines"
    )
    losses = " ".join(f"{x:.4f}" for x in model.epoch_losses)
    kind = "skip-gram" if cfg.sg else "CBOW"
    print(f"{kind}, {cfg.epochs} epochs in {model.seconds:.1f} s; loss per epoch: {losses}")
    print(f"saved {out / 'vectors.txt'} ({len(vocab)} x {cfg.vector_size})")
    return 0


def _load(directory: Path):
    from scratchllm.word2vec import load

    return load(directory)


def _similar(args: argparse.Namespace) -> int:
    saved = _load(args.dir)
    word = saved.normalize(args.word)
    for other, cosine in saved.vectors.most_similar(word, topn=args.topn):
        print(f"{other:<20} {cosine:.4f}")
    return 0


def _analogy(args: argparse.Namespace) -> int:
    saved = _load(args.dir)
    a, b, c = (saved.normalize(w) for w in (args.a, args.b, args.c))
    answers = saved.vectors.analogy(a, b, c, topn=args.topn)
    print(f"{a} is to {b} as {c} is to:")
    for other, cosine in answers:
        print(f"  {other:<20} {cosine:.4f}")
    return 0
