"""Quality per step: scratchllm's ``shakespeare-char`` preset vs nanoGPT's recipe.

Both train a 4-layer, 4-head, 128-wide char GPT (block 64, batch 12, 2000 steps, dropout
0) on ../shared/data/tinyshakespeare.txt, split 90/10 as nanoGPT's prepare.py does, in
one process, on the same machine, one after the other:

* **peer: nanoGPT's recipe**: Hugging Face ``GPT2LMHeadModel`` (the architecture nanoGPT's
  model.py reproduces, with its exact GELU rather than GPT-2's ``gelu_new``) trained
  exactly as nanoGPT's ``train.py`` with ``config/train_shakespeare_char.py`` and the CPU
  overrides: AdamW lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on matrices, warmup 100
  steps, cosine to 1e-4 at step 2000, gradient clip 1.0, batches drawn at random. nanoGPT
  itself measured here: validation loss 1.8857 at 108 ms/iteration, 232 s
  (shared/BASELINES.md section 3).
* **ours**: ``scratchllm train --preset shakespeare-char`` (the same code path as the CLI).

Validation loss is reported two ways: nanoGPT's estimate (mean over ``eval_iters`` = 20
random batches of the validation split) and the exact loss over every validation token
(consecutive windows of 64, each target predicted once). Goal: ours <= 1.85 with the same
model size, batch, block and steps, in no more wall time.

    python benchmarks/bench_train_shakespeare.py             # both (about 2 x 4 minutes)
    python benchmarks/bench_train_shakespeare.py --no-peer   # ours only
    python benchmarks/bench_train_shakespeare.py --set lr=3e-3 --set pos=rope   # try a variant
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
STEPS, B, T, EVAL_ITERS = 2000, 12, 64, 20


def exact_val_loss(model, ids) -> float:  # noqa: ANN001
    """Mean cross-entropy over every target of ``ids`` (1-D LongTensor), windows of T."""
    import torch
    import torch.nn.functional as F

    n = (len(ids) - 1) // T
    x = ids[: n * T].view(n, T)
    y = ids[1 : n * T + 1].view(n, T)
    total = 0.0
    model.eval()
    with torch.inference_mode():
        for i in range(0, n, 256):
            logits = _logits(model, x[i : i + 256])
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)), y[i : i + 256].reshape(-1), reduction="sum"
            ).item()
    model.train()
    return total / (n * T)


def _logits(model, x):  # noqa: ANN001, ANN202
    out = model(x)
    return out.logits if hasattr(out, "logits") else out[0]


def run_peer(text: str, seed: int = 1337) -> dict:
    """nanoGPT's train.py loop, on HF GPT-2, in this process."""
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    n = int(0.9 * len(data))
    train, val = data[:n], data[n:]
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(chars), n_positions=T, n_layer=4, n_head=4, n_embd=128,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        activation_function="gelu",  # nanoGPT's nn.GELU(): exact, as ours
        bos_token_id=0, eos_token_id=0,  # unused; GPT-2's 50256 is outside this vocabulary
    )  # fmt: skip
    model = GPT2LMHeadModel(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.99), fused=True,
    )  # fmt: skip

    def batch(split):  # noqa: ANN001, ANN202
        d = train if split == "train" else val
        ix = torch.randint(len(d) - T, (B,))
        x = torch.stack([torch.from_numpy(d[i : i + T]) for i in ix])
        y = torch.stack([torch.from_numpy(d[i + 1 : i + 1 + T]) for i in ix])
        return x, y

    def lr_at(it: int) -> float:  # nanoGPT's get_lr
        if it < 100:
            return 1e-3 * (it + 1) / (100 + 1)
        ratio = (it - 100) / (STEPS - 100)
        return 1e-4 + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (1e-3 - 1e-4)

    def loss_of(x, y):  # noqa: ANN001, ANN202
        logits = model(input_ids=x).logits
        return torch.nn.functional.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))

    t0 = time.perf_counter()
    for it in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = lr_at(it)
        loss = loss_of(*batch("train"))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        est = sum(loss_of(*batch("val")).item() for _ in range(EVAL_ITERS)) / EVAL_ITERS
    wall = time.perf_counter() - t0
    exact = exact_val_loss(model, torch.from_numpy(val))
    return {"val_est": est, "val_exact": exact, "ms_iter": train_s / STEPS * 1e3, "wall": wall}


def run_ours(overrides: dict) -> dict:
    """``scratchllm train --preset shakespeare-char`` (plus overrides) on the same file."""
    import numpy as np
    import torch

    from scratchllm.training.run import train_from_settings
    from scratchllm.training.settings import resolve_settings

    flags = {"data": str(DATA), "val_fraction": 0.1, "quiet": True, "device": "cpu", **overrides}
    settings = resolve_settings(flags, preset="shakespeare-char")
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run = train_from_settings(settings, out, say=lambda s: None)
        wall = time.perf_counter() - t0
        ds = run.data.dataset
        val = torch.from_numpy(np.asarray(ds.split_tokens("val"), dtype=np.int64))
        exact = exact_val_loss(run.model, val)
        r = run.result
        ms = r.elapsed_s / r.steps * 1e3  # includes its evaluations and checkpoints
    return {"val_est": r.final_val_loss, "val_exact": exact, "ms_iter": ms, "wall": wall}


def _parse_set(items: list[str]) -> dict:
    from scratchllm.training.settings import BY_KEY, check_settings

    out = {}
    for item in items:
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in BY_KEY:
            raise SystemExit(f"--set {item}: unknown setting {key!r}")
        t = BY_KEY[key].type
        out[key] = value.lower() in ("1", "true", "yes") if t is bool else t(value)
    return check_settings(out, "--set")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-peer", action="store_true", help="skip nanoGPT's recipe")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a preset setting (repeatable)")  # fmt: skip
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} is not here (it is karpathy/char-rnn's tinyshakespeare input.txt)")
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; data {DATA.name}")
    rows = {}
    overrides = _parse_set(args.set)
    rows["scratchllm"] = run_ours(overrides)
    print(f"scratchllm done: {rows['scratchllm']}", flush=True)
    if not args.no_peer:
        rows["nanoGPT recipe (HF)"] = run_peer(DATA.read_text(encoding="utf-8"))
    print(f"\nsettings: preset shakespeare-char {overrides or ''}")
    head = f"{'run':<20} {'val (20 batches)':>17} {'val (exact)':>12} {'ms/iter':>8} {'wall s':>7}"
    print(head + "\n" + "-" * len(head))
    print(f"{'nanoGPT (measured)':<20} {1.8857:>17.4f} {'':>12} {107.6:>8.1f} {232:>7.0f}")
    for name, r in rows.items():
        print(
            f"{name:<20} {r['val_est']:>17.4f} {r['val_exact']:>12.4f} "
            f"{r['ms_iter']:>8.1f} {r['wall']:>7.0f}"
        )
    if "nanoGPT recipe (HF)" in rows:
        ours, peer = rows["scratchllm"], rows["nanoGPT recipe (HF)"]
        print(
            f"\nours vs peer: val (exact) {ours['val_exact'] - peer['val_exact']:+.4f}, "
            f"wall time {ours['wall'] / peer['wall']:.2f}x"
        )
    print("Goal: ours <= 1.85 in no more wall time than nanoGPT.")


if __name__ == "__main__":
    main()
