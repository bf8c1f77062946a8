"""How the three vocabulary lookups scale with vocabulary size, and what that does to encoding.

Part 1 times ``lookup(token)`` for random in-vocabulary tokens on vocabularies of
100 ... 50k synthetic words, for each strategy in ``scratchllm.tokenizers.lookup``
and for the peer, Hugging Face ``tokenizers``' ``Tokenizer.token_to_id`` on a WordLevel
model of the same vocabulary (a Rust hash map behind a Python call). The slope of
log(time per lookup) against log(n) shows the trend: ~1 for the O(n) linear scan,
near 0 for the O(log n) binary search and the O(1) hash. (The hash's small positive slope
is the CPU cache, not the algorithm: a 50k-entry table and its strings no longer fit in it.)

Part 2 encodes tinyshakespeare with ``WordTokenizer`` under each strategy and with the
same tokenizer assembled from HF ``tokenizers`` parts (WordLevel + the same regex).

    .venv/bin/python benchmarks/bench_vocab_lookup.py [--plot lookup.png]
"""

from __future__ import annotations

import argparse
import math
import random
import string
import time
from pathlib import Path

from scratchllm.tokenizers.lookup import LOOKUPS, make_lookup
from scratchllm.tokenizers.word import PRE_TOKEN_PATTERN, WordTokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def synthetic_vocab(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct lowercase words of 2-10 letters, in a fixed random order."""
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        words["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10)))] = None
    return list(words)


def per_call_seconds(fn, queries: list[str], budget: float) -> float:
    """Best-of-3 time per call of ``fn`` over ``queries``, each repeat taking >= ``budget``/3 s."""
    best = math.inf
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while True:
            for q in queries:
                fn(q)
            calls += len(queries)
            elapsed = time.perf_counter() - start
            if elapsed >= budget / 3:
                break
        best = min(best, elapsed / calls)
    return best


def hf_word_level(vocab: dict[str, int], pattern: str | None = None):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    if pattern:
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    return tok


def bench_lookups(sizes: list[int], n_queries: int, budget: float) -> dict[str, list[float]]:
    names = [*LOOKUPS, "HF token_to_id"]
    rows: dict[str, list[float]] = {name: [] for name in names}
    rng = random.Random(1)
    for n in sizes:
        vocab = synthetic_vocab(n)
        # Fresh string objects, as a pre-tokenizer makes: no identity shortcut in comparisons.
        queries = [(q + ".")[:-1] for q in rng.choices(vocab, k=n_queries)]
        for name in LOOKUPS:
            lk = make_lookup(name, vocab)
            assert [lk.lookup(q) for q in queries[:50]] == [vocab.index(q) for q in queries[:50]]
            rows[name].append(per_call_seconds(lk.lookup, queries, budget))
        hf = hf_word_level({t: i for i, t in enumerate(vocab)} | {"<unk>": n})
        rows["HF token_to_id"].append(per_call_seconds(hf.token_to_id, queries, budget))

    print(f"\nlookups per second (random in-vocabulary tokens; {n_queries} queries per size)\n")
    head = f"{'strategy':<16}" + "".join(f"{f'n={n:,}':>13}" for n in sizes)
    print(head + f"{'slope':>8}  expected")
    print("-" * (len(head) + 20))
    # The slope a pure O(log n) cost shows between the smallest and the largest size.
    log_slope = math.log(math.log(sizes[-1]) / math.log(sizes[0])) / math.log(sizes[-1] / sizes[0])
    expected = {"linear": "1 (O(n))", "binary": f"{log_slope:.2f} (O(log n))"}
    for name, secs in rows.items():
        slope = math.log(secs[-1] / secs[0]) / math.log(sizes[-1] / sizes[0])
        cells = "".join(f"{1 / s:>13,.0f}" for s in secs)
        print(f"{name:<16}{cells}{slope:>8.2f}  {expected.get(name, '0 (O(1))')}")
    print(f"\n{'ratio to hash':<16}" + "".join(f"{'':>13}" for _ in sizes))
    for name, secs in rows.items():
        ratios = "".join(f"{h / s:>12.3g}x" for s, h in zip(secs, rows["hash"]))
        print(f"{name:<16}{ratios}")
    print("(speed relative to our hash lookup: <1 is slower)")
    return rows


def bench_encode(path: Path, linear_chars: int) -> None:
    if not path.exists():
        print(f"\n{path} not found: skipping the encode benchmark")
        return
    text = path.read_text(encoding="utf-8")
    base = WordTokenizer.train(text)
    vocab = {base.id_to_token(i): i for i in range(base.vocab_size)}
    hf = hf_word_level(vocab, PRE_TOKEN_PATTERN)

    def rate(encode, sample: str) -> tuple[float, list[int]]:
        best, ids = math.inf, []
        for _ in range(3):
            start = time.perf_counter()
            ids = encode(sample)
            best = min(best, time.perf_counter() - start)
        return len(sample.encode("utf-8")) / best / 1e6, ids

    print(
        f"\nWordTokenizer.encode on {path.name} ({len(text) / 1e6:.2f} M chars, "
        f"vocab {base.vocab_size:,})\n"
    )
    peer, hf_ids = rate(lambda s: hf.encode(s).ids, text)
    print(f"{'tokenizer':<36}{'MB/s':>8}{'vs HF':>9}")
    print("-" * 53)
    for name in LOOKUPS:
        tok = WordTokenizer(base.words, lookup=name)
        sample = text[:linear_chars] if name == "linear" else text
        mbs, ids = rate(tok.encode, sample)
        assert ids == (hf_ids if sample is text else hf.encode(sample).ids), name
        note = f" (first {linear_chars:,} chars)" if sample is not text else ""
        print(f"{'ours, ' + name + note:<36}{mbs:>8.2f}{mbs / peer:>8.2f}x")
    print(f"{'HF tokenizers WordLevel':<36}{peer:>8.2f}{1:>8.2f}x")
    print("(identical ids from all four, checked)")


def plot(sizes: list[int], rows: dict[str, list[float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, secs in rows.items():
        ax.loglog(sizes, [s * 1e9 for s in secs], marker="o", label=name)
    ax.set_xlabel("vocabulary size n")
    ax.set_ylabel("ns per lookup")
    ax.set_title("Vocabulary lookup: linear O(n), binary O(log n), hash O(1)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"\nplot saved to {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000, 50_000])
    p.add_argument("--queries", type=int, default=2_000, help="random lookups per size")
    p.add_argument("--budget", type=float, default=0.2, help="seconds per measurement")
    p.add_argument("--data", type=Path, default=DATA, help="text for the encode benchmark")
    p.add_argument(
        "--linear-chars",
        type=int,
        default=100_000,
        help="characters the (slow) linear strategy encodes",
    )
    p.add_argument("--plot", type=Path, help="also save a log-log plot to this PNG")
    args = p.parse_args()
    rows = bench_lookups(args.sizes, args.queries, args.budget)
    bench_encode(args.data, args.linear_chars)
    if args.plot:
        plot(args.sizes, rows, args.plot)


if __name__ == "__main__":
    main()
