"""The NumPy GPT against the PyTorch GPT, side by side in one process: a training step
and token-by-token generation, the same weights and batches for both.

* **train**: one optimizer step as each engine's trainer takes it. NumPy: the scheduled
  lr, ``NumpyGPT.forward_backward``, clipping and ``numpy_gpt.optim.AdamW``. PyTorch:
  ``scratchllm.training.train_step_fn`` (the Trainer's update: forward, backward, foreach
  clip, fused AdamW). float32, dropout 0, clip 1.0.
* **generate**: batch 1, a 16-token prompt, greedy, KV cache, ``numpy_gpt.generate``
  against ``scratchllm.generation.generate`` (the tokens are checked equal).

Configurations (``small`` is the issue's: 4 layers x 4 heads x 128 wide, block 64, batch 12,
vocab 65; ``tiny`` shows per-op overhead)::

    python benchmarks/bench_numpy_gpt.py              # tiny and small, one thread and default
    python benchmarks/bench_numpy_gpt.py --quick      # fewer rounds
    python benchmarks/bench_numpy_gpt.py --threads 1  # one BLAS / intra-op thread each only
    python benchmarks/bench_numpy_gpt.py --threads 1 --clock cpu   # on a busy machine
    python benchmarks/bench_numpy_gpt.py --keep-freed-memory       # as NumpyTrainer runs
    python benchmarks/bench_numpy_gpt.py --parity     # the parity table instead (no timing)

Rounds alternate between the engines so that load from other processes hits both alike;
the table shows medians over rounds and the ratio NumPy / PyTorch (below 1: NumPy faster),
for each ``--threads`` setting side by side: by default one thread each (BLAS, NumPy's
elementwise pool, torch's intra-op pool: the work each engine does) and each engine's
default (every core: what a user gets). With more than one thread, each timed round starts
after a pause and an untimed call (``settle``): without it, an engine timed right after the
other shared the cores with the other's still-spinning threads.
On a machine others are using, wall time mostly measures waiting: ``--clock cpu`` times the
CPU this process used instead (with ``--threads 1`` that is the work each engine did).

``NumpyTrainer`` asks glibc to keep freed memory (``scratchllm.memory``), which spares the
NumPy engine's many large temporaries their page faults; ``--keep-freed-memory`` does the
same here, for both engines (it is one process), so the default run compares each engine
as it allocates out of the box and the flagged run as a NumPy training process allocates.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch

from scratchllm.configs import GPTConfig, TrainConfig
from scratchllm.generation import generate as torch_generate
from scratchllm.memory import keep_freed_memory
from scratchllm.models import GPT
from scratchllm.numpy_gpt import NumpyGPT, parallel
from scratchllm.numpy_gpt import generate as numpy_generate
from scratchllm.numpy_gpt.optim import AdamW
from scratchllm.training import lr_at, train_step_fn

CONFIGS = {
    # name: (n_layer, n_head, n_embd, block T, batch B, vocab)
    "tiny": (2, 2, 32, 32, 4, 65),
    "small": (4, 4, 128, 64, 12, 65),
}


def engines(name: str):
    """The same randomly initialised weights in both engines."""
    L, H, C, T, B, V = CONFIGS[name]
    config = GPTConfig(n_layer=L, n_head=H, n_embd=C, block_size=T, vocab_size=V)
    np_model = NumpyGPT(config, seed=0)
    torch_model = GPT(config)
    named = dict(torch_model.named_parameters())
    with torch.no_grad():
        for n, p in np_model.params.items():
            named[n].copy_(torch.from_numpy(p))
    return np_model, torch_model


def train_steps(np_model: NumpyGPT, torch_model: GPT):
    cfg = TrainConfig(lr=1e-3, warmup_iters=0, schedule="constant", grad_clip=1.0)
    opt = AdamW(np_model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), grad_clip=cfg.grad_clip)
    np_model.train()
    step_no = [0]

    def numpy_step(x: np.ndarray, y: np.ndarray, xt, yt) -> float:
        _, loss, grads = np_model.forward_backward(x, y)
        opt.step(grads, lr_at(step_no[0], cfg))
        step_no[0] += 1
        return loss

    torch_step = train_step_fn(torch_model, cfg, device="cpu")

    def pytorch_step(x, y, xt, yt) -> float:
        return torch_step(xt, yt).item()  # .item(): the step is done when it returns

    return {"numpy": numpy_step, "torch": pytorch_step}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter

# After a call, OpenBLAS's worker threads spin for 2^28 cycles (its THREAD_TIMEOUT, about
# 0.1 s) before they sleep, and libgomp's, PyTorch's, spin briefly too. With more than one
# thread, an engine timed right after the other shares the cores with those spinning
# threads: the tiny model's PyTorch step took 8-11 ms instead of 2. So each timed round
# starts after a pause in which the other engine's threads go to sleep, and one untimed
# call that wakes the timed engine's own (``settle``).
SETTLE_S = 0.3
settle_s = 0.0


def settle(warm) -> None:  # noqa: ANN001
    """With threads > 1: wait for the other engine's idle threads to stop spinning, then
    ``warm()``, untimed."""
    if settle_s:
        time.sleep(settle_s)
        warm()


def time_train(name: str, rounds: int, iters: int) -> dict[str, float]:
    L, H, C, T, B, V = CONFIGS[name]
    steps = train_steps(*engines(name))
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(iters):
        chunk = rng.integers(0, V, size=(B, T + 1))
        x, y = chunk[:, :-1], chunk[:, 1:]
        batches.append((x, y, torch.from_numpy(x), torch.from_numpy(y)))
    losses = {k: [f(*b) for b in batches[:3]] for k, f in steps.items()}  # warm-up
    assert abs(losses["numpy"][-1] - losses["torch"][-1]) < 1e-3 * losses["torch"][-1]
    per_round: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for k, step in steps.items():
            settle(lambda: step(*batches[0]))  # noqa: B023 (called at once)
            t0 = clock()
            for b in batches:
                step(*b)
            per_round[k].append((clock() - t0) / len(batches))
    return {k: statistics.median(v) for k, v in per_round.items()}


def time_generate(name: str, rounds: int, new_tokens: int) -> dict[str, float]:
    np_model, torch_model = engines(name)
    torch_model.eval()
    V = CONFIGS[name][5]
    prompt = np.random.default_rng(1).integers(0, V, size=16).tolist()
    new_tokens = min(new_tokens, CONFIGS[name][3] - 16)  # stay inside the context
    runs = {
        "numpy": lambda: numpy_generate(np_model, [prompt], new_tokens, temperature=0),
        "torch": lambda: torch_generate(torch_model, [prompt], new_tokens, temperature=0).numpy(),
    }
    outs = {k: f() for k, f in runs.items()}  # warm-up, and the tokens must agree
    np.testing.assert_array_equal(outs["numpy"], outs["torch"])
    per_round: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, f in runs.items():
            settle(f)
            t0 = clock()
            f()
            per_round[k].append(new_tokens / (clock() - t0))
    return {k: statistics.median(v) for k, v in per_round.items()}


# -- parity ------------------------------------------------------------------------------------

PARITY_VARIANTS = {
    "GPT-2 (learned, gelu, bias, tied)": {},
    "sinusoidal, relu, untied": {"pos": "sinusoidal", "act": "relu", "tie_weights": False},
    "gelu_tanh, no bias": {"act": "gelu_tanh", "bias": False},
}


def parity_errors(changes: dict, dtype: str) -> tuple[float, float, float]:
    """Max relative error of the logits, of the loss, and over every parameter's gradient
    (each tensor's max |difference| / its max |value|), 2 x 4 x 64 model, batch 4 x 32."""
    config = GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=65, **changes)
    np_model = NumpyGPT(config, seed=0, dtype=dtype)
    rng = np.random.default_rng(1)
    for p in np_model.params.values():  # move off the initialisation: biases and gains matter
        p += rng.normal(0.0, 0.05, size=p.shape).astype(p.dtype)
    t_dtype = torch.float64 if dtype == "float64" else torch.float32
    twin = GPT(config).to(t_dtype)
    named = dict(twin.named_parameters())
    with torch.no_grad():
        for n, p in np_model.params.items():
            named[n].copy_(torch.from_numpy(p))
    ids = rng.integers(0, 65, size=(4, 33))
    x, y = ids[:, :-1], ids[:, 1:]
    logits, loss, grads = np_model.forward_backward(x, y)
    t_logits, _ = twin(torch.from_numpy(x))
    t_loss = torch.nn.functional.cross_entropy(
        t_logits.reshape(-1, 65), torch.from_numpy(y).reshape(-1)
    )
    t_loss.backward()
    t_logits = t_logits.detach().numpy()
    e_logits = float(np.abs(logits - t_logits).max() / np.abs(t_logits).max())
    e_loss = abs(loss - t_loss.item()) / t_loss.item()
    e_grad = max(
        float(np.abs(grads[n] - p.grad.numpy()).max() / np.abs(p.grad.numpy()).max())
        for n, p in twin.named_parameters()
    )
    return e_logits, e_loss, e_grad


def training_parity(steps: int = 10) -> tuple[float, int]:
    """Max relative difference of the logged losses over ``steps`` steps of the two
    trainers from the same weights, on the same character data; and the rows compared."""
    import tempfile
    from pathlib import Path

    from scratchllm.data import TokenDataset
    from scratchllm.numpy_gpt.trainer import NumpyTrainer
    from scratchllm.tokenizers import CharTokenizer
    from scratchllm.training import Trainer
    from scratchllm.training.plot import read_metrics

    text = "the quick brown fox jumps over the lazy dog.\n" * 200
    with tempfile.TemporaryDirectory() as tmp:
        data = TokenDataset.from_text(text, CharTokenizer.train(text), Path(tmp) / "data")
        config = GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=32,
                           vocab_size=data.vocab_size)  # fmt: skip
        np_model = NumpyGPT(config, seed=0)
        twin = GPT(config)
        named = dict(twin.named_parameters())
        with torch.no_grad():
            for n, p in np_model.params.items():
                named[n].copy_(torch.from_numpy(p))
        cfg = dict(max_iters=steps, batch_size=8, lr=3e-3, warmup_iters=2, eval_interval=5,
                   eval_iters=2, log_interval=1, progress=False, device="cpu")  # fmt: skip
        Trainer(twin, data, TrainConfig(out_dir=f"{tmp}/torch", **cfg)).train()
        NumpyTrainer(np_model, data, TrainConfig(out_dir=f"{tmp}/numpy", **cfg)).train()
        rows = [read_metrics(f"{tmp}/{d}/metrics.jsonl") for d in ("torch", "numpy")]
    diffs = [abs(a["loss"] - b["loss"]) / a["loss"] for a, b in zip(*rows)]
    return max(diffs), len(diffs)


def print_parity() -> None:
    print("| model | dtype | logits | loss | worst gradient |")
    print("|---|---|---|---|---|")
    for label, changes in PARITY_VARIANTS.items():
        for dtype in ("float64", "float32"):
            e = parity_errors(changes, dtype)
            print(f"| {label} | {dtype} | {e[0]:.1e} | {e[1]:.1e} | {e[2]:.1e} |")
    worst, n = training_parity()
    print(f"\n{n} training steps, NumpyTrainer vs Trainer (float32, same weights and data): "
          f"largest relative difference of a logged loss {worst:.1e}")  # fmt: skip


def thread_settings(choice: str) -> int | None:
    """``"default"`` (every core: each engine's own default) or a thread count."""
    if choice == "default":
        return None
    n = int(choice)
    if n < 1:
        raise argparse.ArgumentTypeError(f"threads must be >= 1 or 'default', got {choice}")
    return n


@contextlib.contextmanager
def threads(n: int | None):  # noqa: ANN201
    """Both engines on ``n`` threads (BLAS, NumPy's elementwise pool, torch's intra-op
    pool), or each on its default when ``n`` is None; restored afterwards."""
    from threadpoolctl import threadpool_limits

    torch_default = torch.get_num_threads()
    if n is None:
        yield
        return
    with threadpool_limits(n):  # NumPy's BLAS
        parallel.set_num_threads(n)  # NumPy's elementwise work
        torch.set_num_threads(n)
        try:
            yield
        finally:
            parallel.set_num_threads(None)
            torch.set_num_threads(torch_default)


def describe_threads() -> str:
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info())
    return (
        f"numpy: BLAS ({blas}) and {parallel.get_num_threads()} elementwise; "
        f"torch: {torch.get_num_threads()} intra-op"
    )


def measure(configs: list[str], rounds: int, iters: int) -> dict[tuple[str, str], tuple]:
    """``(config, what) -> (numpy, torch, numpy/torch time ratio)`` under the current threads."""
    out = {}
    for name in configs:
        t = time_train(name, rounds, iters)
        out[name, "train step (ms)"] = (t["numpy"] * 1e3, t["torch"] * 1e3, t["numpy"] / t["torch"])
        g = time_generate(name, rounds, 48)
        out[name, "generate (tokens/s)"] = (g["numpy"], g["torch"], g["torch"] / g["numpy"])
    return out


def print_table(results: dict[str, dict[tuple[str, str], tuple]]) -> None:
    """One row per (config, measurement), one numpy | torch | ratio group per thread setting."""
    labels = list(results)
    head = f"{'config':<7} {'what':<21}" + "".join(
        f" | {'numpy':>9} {'torch':>9} {'ratio':>7}" for _ in labels
    )
    groups = "".join(f" | {('threads: ' + label):^27}" for label in labels)
    print(f"{'':<29}{groups}")
    print(head)
    print("-" * len(head))
    for key in results[labels[0]]:
        cells = ""
        for label in labels:
            a, b, r = results[label][key]
            fmt = ".2f" if "ms" in key[1] else ".0f"
            cells += f" | {a:>9{fmt}} {b:>9{fmt}} {r:>6.2f}x"
        print(f"{key[0]:<7} {key[1]:<21}{cells}")
    print(
        "\nratio: NumPy's time / PyTorch's (generation: the inverse of the tokens/s ratio); "
        "< 1 = NumPy faster"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument(
        "--threads", nargs="+", type=thread_settings, default=[1, None], metavar="N|default",
        help="thread settings to time, each for both engines (default: 1 default)",
    )  # fmt: skip
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--parity", action="store_true", help="print the parity table instead")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help="what to time")
    parser.add_argument(
        "--keep-freed-memory", action="store_true", help="glibc keeps freed blocks (both engines)"
    )
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    kept = keep_freed_memory() if args.keep_freed_memory else False
    if args.parity:
        print_parity()
        return
    rounds, iters = (3, 5) if args.quick else (7, 10)
    memory = "kept" if kept else "returned (glibc default)"
    print(f"numpy {np.__version__}, torch {torch.__version__}; {args.clock} clock; "
          f"freed memory {memory}")  # fmt: skip
    results = {}
    global settle_s
    for n in args.threads:
        label = "default" if n is None else str(n)
        settle_s = 0.0 if n == 1 else SETTLE_S
        with threads(n):
            print(f"threads {label}: {describe_threads()}")
            results[label] = measure(args.configs, rounds, iters)
    print()
    print_table(results)


if __name__ == "__main__":
    main()
