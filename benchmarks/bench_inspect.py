"""Looking inside, against the libraries people trust, side by side in one process.

* **attention weights**: ``attention_maps`` (our GPT's reference attention path, one
  forward, weights of every layer and head) against Hugging Face GPT-2 called with
  ``output_attentions=True`` (its eager path) on identical weights, batch 1. The two
  maps must agree to 1e-5.
* **PCA**: ``pca_2d`` (numpy SVD of the centred matrix) against ``torch.pca_lowrank``
  (randomised, q=2 plus oversampling) on a GPT-2-shaped embedding matrix; the
  projections must agree up to sign.
* **plots** (no peer): seconds to write one attention heatmap and the n-gram table PNG.

Ratio = peer time / ours: above 1 means ours is faster.

    python benchmarks/bench_inspect.py                  # defaults: T = 64 and 256
    python benchmarks/bench_inspect.py --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_attention(T: int, repeats: int) -> tuple[float, float, float]:
    from transformers import GPT2Config, GPT2LMHeadModel

    from scratchllm.evaluation.inspect import attention_maps
    from scratchllm.interop import copy_gpt2_weights
    from scratchllm.models import GPT, GPTConfig

    torch.manual_seed(0)
    L, H, C, V = 6, 6, 384, 65
    hf = GPT2LMHeadModel(
        GPT2Config(n_layer=L, n_head=H, n_embd=C, n_positions=512, vocab_size=V,
                   bos_token_id=None, eos_token_id=None, attn_implementation="eager")
    ).eval()  # fmt: skip
    ours = GPT(GPTConfig(n_layer=L, n_head=H, n_embd=C, block_size=512, vocab_size=V,
                         act="gelu_tanh")).eval()  # fmt: skip
    copy_gpt2_weights(hf, ours)
    ids = torch.randint(0, V, (T,)).tolist()
    tokens = [str(i) for i in ids]
    idx = torch.tensor([ids])

    def peer():
        with torch.no_grad():
            return hf(idx, output_attentions=True).attentions

    mine = attention_maps(ours, ids, tokens)
    ref = torch.cat(peer()).double().numpy()
    err = float(np.abs(mine.weights - ref).max())
    assert err < 1e-5, f"attention maps differ from transformers' by {err}"
    return timed(lambda: attention_maps(ours, ids, tokens), repeats), timed(peer, repeats), err


def bench_pca(repeats: int) -> tuple[float, float, float]:
    from scratchllm.evaluation.inspect import pca_2d

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 768)) / np.arange(1, 769)  # a clear spectrum: 1, 1/2, 1/3, ...
    xt = torch.tensor(x)

    def peer():
        _, _, v = torch.pca_lowrank(xt, q=8, center=True, niter=4)
        return ((xt - xt.mean(0)) @ v[:, :2]).numpy()

    ours = pca_2d(x).coords
    theirs = peer()
    err = float(np.abs(np.abs(ours) - np.abs(theirs)).max() / np.abs(ours).max())
    assert err < 1e-3, f"PCA differs from torch.pca_lowrank by {err} (relative)"
    return timed(lambda: pca_2d(x), repeats), timed(peer, repeats), err


def bench_plots(repeats: int) -> list[tuple[str, float]]:
    from scratchllm.data.languages import get
    from scratchllm.evaluation.inspect import attention_maps, ngram_table
    from scratchllm.evaluation.inspect_attention import plot_attention
    from scratchllm.evaluation.inspect_ngram import plot_ngram_table
    from scratchllm.models import GPT, GPTConfig, NGram, NGramConfig
    from scratchllm.tokenizers import CharTokenizer

    lang = get("markov:order=2,alphabet=6,branch=2")
    tok = CharTokenizer.train(lang.alphabet)
    ngram = NGram(NGramConfig(n=3, vocab_size=tok.vocab_size)).fit(tok.encode(lang.corpus(500)))
    gpt = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=16, block_size=32, vocab_size=7))
    maps = attention_maps(gpt, list(range(7)) * 4, list("abcdefg") * 4, offsets=(0, 1))
    with tempfile.TemporaryDirectory() as d:
        table = ngram_table(ngram, tok, lang)
        return [
            ("n-gram table (32 rows)", timed(lambda: plot_ngram_table(table, Path(d) / "t.png"),
                                             repeats)),
            ("attention, 1 head + grid + offsets (T=28)",
             timed(lambda: plot_attention(maps, d), repeats)),
        ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # numpy's BLAS too, so both sides get the same threads
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}\n")
    print(f"{'measurement':<44}{'ours ms':>10}{'peer ms':>10}{'ratio':>8}   max diff")
    for T in args.lengths:
        ours, peer, err = bench_attention(T, args.repeats)
        name = f"attention maps 6x6x384, T={T} (HF GPT-2)"
        print(f"{name:<44}{1e3 * ours:>10.1f}{1e3 * peer:>10.1f}{peer / ours:>8.2f}   {err:.1e}")
    ours, peer, err = bench_pca(args.repeats)
    name = "PCA of 2048x768 (torch.pca_lowrank)"
    print(f"{name:<44}{1e3 * ours:>10.1f}{1e3 * peer:>10.1f}{peer / ours:>8.2f}   {err:.1e}")
    print()
    for name, seconds in bench_plots(args.repeats):
        print(f"{'plot: ' + name:<44}{1e3 * seconds:>10.1f}{'-':>10}{'-':>8}")


if __name__ == "__main__":
    main()
