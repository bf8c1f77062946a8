"""Data pipeline and counting n-gram speed, side by side with the obvious peers, in one process.

    .venv/bin/python benchmarks/bench_data.py [--repeat 3] [--chars 1115394] [--data FILE]

What is measured, on ../shared/data/tinyshakespeare.txt (char-level tokens):

- count: ``NGram.fit`` (vectorised suffix-trie counting) vs the textbook
  ``collections.Counter`` over every context of length 0..n-1 (the same statistics: checked).
- score: exact held-out log-likelihood of 100k tokens with ``evaluate_ids`` vs a Python loop
  of dict lookups with the same add-k formula (checked equal).
- batch: ``TokenDataset.get_batch`` (one fancy index over the memmap) vs nanoGPT's
  ``get_batch`` (a Python list of per-row ``torch.from_numpy`` slices, then ``torch.stack``),
  B = 64, T = 256, same memmap.
- stdlib-docs: extracting the built-in corpus (once; later runs read the cache).

"x ours" = peer time / our time: above 1 means ours is faster. Times are the best of
``--repeat`` runs, ours and the peer's in alternation, and the range is that of the
round-by-round ratios; the shared machine's load makes absolute figures noisy. The n-gram
scores from a dense table of log-probabilities when it fits ``NGram``'s
``DENSE_TABLE_LIMIT`` (n=3 here; built on the first call after counting, so the first
round's ratio includes building it), else from the sparse counts (n=5).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from scratchllm.data.corpus import extract_docstrings, read_text_file
from scratchllm.data.dataset import TokenDataset
from scratchllm.evaluation.perplexity import evaluate_ids
from scratchllm.models import NGram, NGramConfig
from scratchllm.tokenizers import CharTokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def best_pair(ours, peer, repeat: int) -> tuple[list[float], object, list[float], object]:
    """The times of each, timed in alternation so the machine's drift hits both alike."""
    t_ours, t_peer, out_ours, out_peer = [], [], None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out_ours = ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out_peer = peer()
        t_peer.append(time.perf_counter() - t0)
    return t_ours, out_ours, t_peer, out_peer


def counter_ngrams(ids: list[int], n: int) -> tuple[Counter, Counter]:
    """Every (context, next) of every order 0..n-1, the textbook way."""
    pairs: Counter = Counter()
    for j in range(n):
        ctx = [tuple(ids[p - j : p]) for p in range(j, len(ids))]
        pairs.update(zip(ctx, ids[j:]))
    totals: Counter = Counter()
    for (ctx, _), c in pairs.items():
        totals[ctx] += c
    return pairs, totals


def dict_score(pairs: Counter, totals: Counter, ids: list[int], n: int, V: int, k: float) -> float:
    nll = 0.0
    for p in range(1, len(ids)):
        ctx = tuple(ids[max(0, p - n + 1) : p])
        nll -= math.log((pairs.get((ctx, ids[p]), 0) + k) / (totals.get(ctx, 0) + k * V))
    return nll


def nanogpt_get_batch(data: np.ndarray, batch_size: int, block_size: int, rng) -> tuple:
    ix = torch.from_numpy(rng.integers(0, len(data) - block_size, size=batch_size))
    x = torch.stack([torch.from_numpy(data[i : i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack(
        [torch.from_numpy(data[i + 1 : i + 1 + block_size].astype(np.int64)) for i in ix]
    )
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is kept)")
    ap.add_argument("--chars", type=int, default=None, help="use only the first N characters")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--data", type=Path, default=DATA, help=f"corpus (default: {DATA})")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    text = read_text_file(args.data)[: args.chars]
    tok = CharTokenizer.train(text)
    ids = tok.encode(text)
    V, k = tok.vocab_size, 0.5
    split = len(ids) - 100_000
    train, held = ids[:split], ids[split:]
    rows = []

    for n in (3, 5):
        t_ours, model, t_peer, (pairs, totals) = best_pair(
            lambda n=n: NGram(NGramConfig(n, V, k)).fit(train),
            lambda n=n: counter_ngrams(train, n),
            args.repeat,
        )
        assert model.counts.numel() == len(pairs) and model.num_contexts == len(totals)
        rows.append((f"count n={n} ({len(train) / 1e6:.2f}M tok)", t_ours, t_peer, "Counter"))

        t_ours, (nll, _), t_peer, ref = best_pair(
            lambda m=model: evaluate_ids(m, held),
            lambda p=pairs, t=totals, n=n: dict_score(p, t, held, n, V, k),
            args.repeat,
        )
        assert abs(nll - ref) < 1e-6 * abs(ref), (nll, ref)
        rows.append((f"score n={n} (100k tok)", t_ours, t_peer, "dict loop"))

    with tempfile.TemporaryDirectory() as tmp:
        ds = TokenDataset.from_text(text, tok, tmp)
        data = ds.split_tokens("train")
        rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
        reps = 200
        t_ours, _ = best(
            lambda: [ds.get_batch("train", 64, 256, rng_a) for _ in range(reps)], args.repeat
        )
        t_peer, _ = best(
            lambda: [nanogpt_get_batch(data, 64, 256, rng_b) for _ in range(reps)], args.repeat
        )
        rows.append(("batch B=64 T=256 (per batch)", [t_ours / reps], [t_peer / reps], "nanoGPT"))

    import sysconfig

    t0 = time.perf_counter()
    docs = extract_docstrings(sysconfig.get_paths()["stdlib"])
    t_docs = time.perf_counter() - t0

    print(f"{'case':<32} {'ours':>10} {'peer':>10} {'x ours':>8}  [per-round range]  peer")
    for name, ours, peer, who in rows:
        ratios = [b / a for a, b in zip(ours, peer)]  # round by round, the peer run after ours
        spread = f"[{min(ratios):.1f}-{max(ratios):.1f}]" if len(ratios) > 1 else ""
        print(
            f"{name:<32} {min(ours) * 1e3:>8.2f}ms {min(peer) * 1e3:>8.2f}ms "
            f"{min(peer) / min(ours):>8.1f}  {spread:17}  {who}"
        )
    print(f"stdlib-docs extraction: {len(docs) / 1e6:.2f} MB in {t_docs:.1f} s (once, then cached)")


if __name__ == "__main__":
    main()
