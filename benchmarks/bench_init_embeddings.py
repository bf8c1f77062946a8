"""word2vec embeddings into the LM: validation loss with and without, at the same budget.

A word-level GPT trains on tinyshakespeare twice per seed, with the same settings and
steps: once from GPT-2's random initialisation, once with ``--init-embeddings`` (its
token embeddings started from word2vec vectors, ``word2vec.token_embeddings``). The
vectors are trained first (``scratchllm word2vec train``, CBOW, gensim's defaults but the
width) on the first 85 % of the text only: the validation tokens are the last 10 %, so
nothing of them is seen before they are scored.

    python benchmarks/bench_init_embeddings.py                 # 300 steps, seeds 0 1 2
    python benchmarks/bench_init_embeddings.py --steps 1000 --engine numpy
    python benchmarks/bench_init_embeddings.py --data other.txt --vector-size 128

Prints each seed's validation loss both ways and the mean difference.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a UTF-8 text file")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--engine", choices=("torch", "numpy"), default="torch")
    parser.add_argument("--vector-size", type=int, default=64, help="word2vec width")
    parser.add_argument("--n-embd", type=int, default=64, help="the GPT's width")
    parser.add_argument("--vocab-size", type=int, default=4000, help="word tokenizer's vocabulary")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: no such file; pass --data FILE")

    from scratchllm.cli import main as cli
    from scratchllm.numpy_gpt import run as numpy_run
    from scratchllm.training import run as torch_run

    train_run = numpy_run.train_run if args.engine == "numpy" else torch_run.train_run
    settings = dict(
        data=str(args.data), tokenizer="word", vocab_size=args.vocab_size, n_layer=2, n_head=4,
        n_embd=args.n_embd, block_size=32, batch_size=16, max_iters=args.steps,
        eval_interval=args.steps, eval_iters=20, lr=3e-3, quiet=True, device="cpu",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        text = args.data.read_text(encoding="utf-8")
        head = Path(tmp) / "train-part.txt"
        head.write_text(text[: int(len(text) * 0.85)], encoding="utf-8")
        vectors = Path(tmp) / "vectors"
        w2v = ["word2vec", "train", "--data", str(head), "--out", str(vectors), "--vector-size",
               str(args.vector_size), "--min-count", "2", "--seed", "0", "--quiet"]  # fmt: skip
        if cli(w2v) != 0:
            raise SystemExit("word2vec training failed")
        print(f"\n{args.data.name}, {args.engine} engine, GPT 2 x 4 x {args.n_embd}, word "
              f"vocabulary {args.vocab_size}, {args.steps} steps x 16 x 32 tokens; word2vec "
              f"{args.vector_size} wide on the first 85 % of the text")  # fmt: skip
        print(f"{'seed':>4} {'without':>9} {'with':>9} {'with - without':>15}")
        diffs = []
        for seed in args.seeds:
            val = {}
            for name, extra in (("without", {}), ("with", {"init_embeddings": str(vectors)})):
                out = Path(tmp) / f"{name}-{seed}"
                run = train_run(out, {**settings, **extra, "seed": seed}, say=lambda s: None)
                val[name] = run.result.final_val_loss
            diffs.append(val["with"] - val["without"])
            print(f"{seed:>4} {val['without']:>9.4f} {val['with']:>9.4f} {diffs[-1]:>+15.4f}")
        print(f"mean difference {statistics.mean(diffs):+.4f} (validation loss, nats per token; "
              "< 0: the word2vec start is better)")  # fmt: skip


if __name__ == "__main__":
    main()
