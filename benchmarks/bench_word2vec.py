"""word2vec from scratch (NumPy) against gensim 4.4: quality and wall time, side by side.

    python benchmarks/bench_word2vec.py                 # Lee + Wikipedia, CBOW + skip-gram, 5 seeds
    python benchmarks/bench_word2vec.py --quick         # Lee only, 2 seeds (about a minute)
    python benchmarks/bench_word2vec.py --corpus wiki --model sg --seeds 3

Corpora (both shipped in gensim's wheel under gensim/test/test_data):

- ``lee``: ``lee_background.cor``, 300 news texts, ~60k words. Few WordSim/SimLex pairs are
  in its vocabulary (see the coverage column): its scores are near noise for both.
- ``wiki``: ``enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``, 106
  Wikipedia articles, ~450k words, extracted with gensim's ``WikiCorpus`` (one article per
  line, lowercased, markup removed), then split into words as our CLI splits any text.

Both trainers get the very same sentences and settings (gensim's defaults unless given:
vector_size 100, window 5, min_count 5, negative 5, sample 1e-3, epochs 5), gensim with
``workers=1`` and ours with BLAS held to one thread. Every run's vocabulary is checked equal.
Per score the table gives gensim's mean ± sd and [min, max] over the seeds, ours, and whether
our mean is within gensim's range; then the top-10 neighbour overlap of the 1000 most
frequent words (ours vs gensim over all seed pairs, beside gensim vs gensim) and the wall
time per run (vocabulary building included for both). Goals (issue 16): every score within
gensim's spread, overlap >= 0.9x gensim's own, time <= 3x gensim's.

The machine's load makes times noisy; the ratio is taken in turns in one process.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from scratchllm.word2vec import LineCorpus, Word2VecConfig
from scratchllm.word2vec.compare import compare, gensim_data, table

WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def wiki_corpus(directory: Path) -> LineCorpus:
    """The shortened Wikipedia dump as a text file, one article per line."""
    from gensim.corpora.wikicorpus import WikiCorpus

    logging.getLogger("gensim").setLevel(logging.ERROR)
    path = directory / "wiki.txt"
    wiki = WikiCorpus(str(gensim_data(WIKI)), dictionary={}, processes=1)
    with path.open("w", encoding="utf-8") as f:
        for words in wiki.get_texts():
            f.write(" ".join(words) + "\n")
    return LineCorpus(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("lee", "wiki", "both"), default="both")
    parser.add_argument("--model", choices=("cbow", "sg", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="Lee only, 2 seeds")
    args = parser.parse_args(argv)
    if args.quick:
        args.corpus, args.seeds = "lee", 2
    corpora = ["lee", "wiki"] if args.corpus == "both" else [args.corpus]
    models = {"cbow": 0, "sg": 1}
    chosen = list(models) if args.model == "both" else [args.model]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in corpora:
            corpus = (
                LineCorpus(gensim_data("lee_background.cor"))
                if name == "lee"
                else wiki_corpus(Path(tmp))
            )
            sentences = [list(s) for s in corpus]  # in memory: both read the same lists
            words = sum(map(len, sentences))
            for model in chosen:
                cfg = Word2VecConfig(sg=models[model], epochs=args.epochs)
                start = time.perf_counter()
                result = compare(sentences, cfg, seeds=range(args.seeds))
                label = f"{name} ({words // 1000}k words, {result.vocab_size} types), {model}"
                rows.append((label, result))
                # each row as soon as it is measured (a long run keeps what it finished)
                print(f"{label}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
                print(table([(label, result)]), file=sys.stderr, flush=True)
    print(table(rows))
    print()
    for label, result in rows:
        ok = all(result.within_spread(s) for s in ("wordsim353", "simlex999", "analogies"))
        print(
            f"{label}: scores within gensim's spread: {'yes' if ok else 'NO'}; neighbour "
            f"overlap {result.overlap_ratio:.2f}x gensim's own; time {result.time_ratio:.2f}x "
            "gensim (workers=1)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
