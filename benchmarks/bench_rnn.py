"""RNN / GRU / LSTM speed: our written-out cells vs torch.nn.RNN/GRU/LSTM, identical weights.

Two measurements per cell, fp32 on CPU, in one process:

* **train**: one forward + backward of a language model (embedding -> 2 recurrent layers
  -> linear head) on a batch of 32 x 64 tokens, vocab 65, n_embd 64, n_hidden 256.
  Peer: the same model with ``torch.nn.LSTM`` (etc.) as its recurrent stack, weights
  copied. Ours twice: the written-out cells (``fast=False``, the default) and ``fast=True``
  (our parameters through torch's kernels).
* **generate**: greedy, batch 1, a 16-token prompt, 256 new tokens (block_size 512 so
  the window never slides). Peer: a plain decode loop over the torch model carrying its
  ``(h, c)``. Ours: ``scratchllm.generation.generate`` with the carried state, and
  without it (``use_cache=False``: the whole window re-run per token).

Every variant must give the same logits (train) or tokens (generate); the table says so.

    python benchmarks/bench_rnn.py                  # all three cells, best of 5 interleaved runs
    python benchmarks/bench_rnn.py --cells lstm --repeats 5
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

VOCAB, N_EMBD, N_HIDDEN, N_LAYER = 65, 64, 256, 2
BATCH, T_TRAIN = 32, 64
PROMPT, NEW, BLOCK = 16, 256, 512


class TorchRNNLM(nn.Module):
    """The peer: the same architecture on ``torch.nn.RNN/GRU/LSTM``."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.wte = nn.Embedding(VOCAB, N_EMBD)
        self.rnn = cls(N_EMBD, N_HIDDEN, N_LAYER, batch_first=True)
        self.lm_head = nn.Linear(N_HIDDEN, VOCAB)

    def forward(self, idx, state=None):
        out, state = self.rnn(self.wte(idx), state)
        return self.lm_head(out), state


def build(cell: str):
    from scratchllm.models import RNNLM, RNNConfig

    config = dict(
        cell=cell, vocab_size=VOCAB, n_embd=N_EMBD, n_hidden=N_HIDDEN, n_layer=N_LAYER,
        block_size=BLOCK,
    )  # fmt: skip
    torch.manual_seed(0)
    ours = RNNLM(RNNConfig(**config))
    fast = RNNLM(RNNConfig(**config, fast=True))
    peer = TorchRNNLM(cell)
    fast.load_state_dict(ours.state_dict())
    peer.load_state_dict(ours.state_dict())  # same names: wte, rnn.weight_ih_l0, ..., lm_head
    return ours, fast, peer


def interleaved_min(fns: list, repeats: int) -> list[float]:
    """Seconds per call of each function: the fastest of ``repeats`` runs, taken in turn
    (a load spike on a shared machine then hits every variant alike, and min ignores it)."""
    for fn in fns:
        fn()  # warm-up
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def bench_train(cell: str, repeats: int) -> list[tuple[str, float, str]]:
    ours, fast, peer = build(cell)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, VOCAB, (BATCH, T_TRAIN), generator=g)
    targets = torch.randint(0, VOCAB, (BATCH, T_TRAIN), generator=g)

    def step(model):
        def run():
            model.zero_grad(set_to_none=True)
            logits = model(idx)[0]
            loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
            loss.backward()
            return logits

        return run

    ref = step(peer)().detach()
    variants = (("torch.nn (peer)", peer), ("ours", ours), ("ours fast=True", fast))
    checks = []
    for _, model in variants:
        diff = (step(model)().detach() - ref).abs().max().item()
        checks.append(f"max |dlogits| {diff:.1e}")
    times = interleaved_min([step(model) for _, model in variants], repeats)
    return [(name, t, check) for (name, _), t, check in zip(variants, times, checks)]


def peer_generate(peer: TorchRNNLM, prompt: torch.Tensor, n: int) -> list[int]:
    out = prompt[0].tolist()
    with torch.inference_mode():
        logits, state = peer(prompt)
        for _ in range(n):
            token = logits[0, -1].argmax()
            out.append(int(token))
            logits, state = peer(token.view(1, 1), state)
    return out


def bench_generate(cell: str, repeats: int) -> list[tuple[str, float, str]]:
    from scratchllm.generation import generate

    ours, _, peer = build(cell)
    ours.eval()
    peer.eval()
    prompt = torch.randint(0, VOCAB, (1, PROMPT), generator=torch.Generator().manual_seed(2))
    ref = peer_generate(peer, prompt, NEW)
    variants = [
        ("torch.nn loop (peer)", lambda: peer_generate(peer, prompt, NEW)),
        ("ours, carried state", lambda: generate(ours, prompt, NEW, temperature=0)[0].tolist()),
        (
            "ours, no state",
            lambda: generate(ours, prompt, NEW, temperature=0, use_cache=False)[0].tolist(),
        ),
    ]
    checks, slow = [], None
    for name, fn in variants:
        t0 = time.perf_counter()
        tokens = fn()
        if "no state" in name:  # quadratic: its one (long) run is its timing
            slow = time.perf_counter() - t0
        checks.append("same tokens" if tokens == ref else f"differs at {_first_diff(tokens, ref)}")
    times = interleaved_min([fn for _, fn in variants[:2]], repeats) + [slow]
    return [(name, NEW / t, check) for (name, _), t, check in zip(variants, times, checks)]


def _first_diff(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", nargs="+", default=["rnn", "gru", "lstm"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"\ntrain step: batch {BATCH} x {T_TRAIN}, {N_LAYER} layers, hidden {N_HIDDEN}")
    print(f"{'cell':5} {'variant':22} {'ms/step':>9} {'peer/ours':>10}  check")
    for cell in args.cells:
        rows = bench_train(cell, args.repeats)
        peer_t = rows[0][1]
        for name, t, check in rows:
            print(f"{cell:5} {name:22} {t * 1e3:9.1f} {peer_t / t:10.2f}  {check}")
    print(f"\ngreedy generation: batch 1, prompt {PROMPT}, {NEW} new tokens")
    print(f"{'cell':5} {'variant':22} {'tokens/s':>9} {'ours/peer':>10}  check")
    for cell in args.cells:
        rows = bench_generate(cell, args.repeats)
        peer_tps = rows[0][1]
        for name, tps, check in rows:
            print(f"{cell:5} {name:22} {tps:9.0f} {tps / peer_tps:10.2f}  {check}")


if __name__ == "__main__":
    main()
