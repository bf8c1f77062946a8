"""Greedy generation speed: scratchllm vs Hugging Face GPT-2, identical weights, one process.

Batch 1, a 16-token prompt, 256 new tokens, greedy, fp32 on CPU, for two model sizes:

* small: 4 layers x 4 heads x 128 wide, vocab 65
* baby:  6 layers x 6 heads x 384 wide, vocab 65

Both use ``n_positions = block_size = 512``: the issue's block of 256 cannot hold 16 + 256
tokens, and the peer baseline (shared/BASELINES.md section 4) used 512 too. Each variant
runs HF ``generate`` with and without its cache and ours with and without the KV cache;
every variant must produce the same tokens (the table says where they first differ).

    python benchmarks/bench_generate.py                 # both configs, 3 timed repeats each
    python benchmarks/bench_generate.py --configs small --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

CONFIGS = {
    "small": dict(n_layer=4, n_head=4, n_embd=128),
    "baby": dict(n_layer=6, n_head=6, n_embd=384),
}
VOCAB, POSITIONS, PROMPT, NEW = 65, 512, 16, 256


def build_pair(n_layer: int, n_head: int, n_embd: int):
    """An HF GPT2LMHeadModel (seeded random init) and our GPT holding the same weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from scratchllm.models import GPT, GPTConfig

    torch.manual_seed(0)
    hf_config = GPT2Config(
        vocab_size=VOCAB, n_positions=POSITIONS, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, bos_token_id=None,
        eos_token_id=None,
    )  # fmt: skip
    hf = GPT2LMHeadModel(hf_config).eval()
    ours = GPT(
        GPTConfig(
            block_size=POSITIONS, vocab_size=VOCAB, n_layer=n_layer, n_head=n_head,
            n_embd=n_embd, act="gelu_tanh", dropout=0.0,
        )
    ).eval()  # fmt: skip
    copy_hf_weights(hf, ours)
    return hf, ours


def copy_hf_weights(hf, ours) -> None:
    """Copy GPT-2 weights into our GPT: same names; HF's Conv1D stores W transposed."""
    try:  # the interop package does this for real checkpoints, when it is present
        from scratchllm.interop import copy_gpt2_weights  # type: ignore[attr-defined]

        copy_gpt2_weights(hf, ours)
        return
    except ImportError:
        pass
    theirs = hf.state_dict()
    with torch.no_grad():
        for name, p in ours.state_dict().items():
            src = theirs[name]
            if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
                src = src.t()
            p.copy_(src)


def time_it(fn, repeats: int) -> tuple[float, torch.Tensor]:
    """Median seconds over ``repeats`` runs after one warm-up run, and the last output."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def first_difference(a: torch.Tensor, b: torch.Tensor) -> str:
    a, b = a.reshape(-1), b.reshape(-1)
    if a.shape == b.shape and torch.equal(a, b):
        return "same"
    n = min(a.numel(), b.numel())
    diff = (a[:n] != b[:n]).nonzero()
    return f"differs at token {int(diff[0]) - PROMPT if diff.numel() else n - PROMPT}"


def run(config_name: str, repeats: int) -> list[tuple]:
    from scratchllm.generation import generate

    hf, ours = build_pair(**CONFIGS[config_name])
    prompt = torch.randint(0, VOCAB, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)

    def hf_gen(cache: bool):
        with torch.inference_mode():
            return hf.generate(
                prompt, attention_mask=mask, max_new_tokens=NEW, min_new_tokens=NEW,
                do_sample=False, use_cache=cache, pad_token_id=0,
            )  # fmt: skip

    def our_gen(cache: bool):
        return generate(ours, prompt, NEW, temperature=0, use_cache=cache)

    variants = [
        ("HF generate, cache", lambda: hf_gen(True)),
        ("HF generate, no cache", lambda: hf_gen(False)),
        ("scratchllm, KV cache", lambda: our_gen(True)),
        ("scratchllm, no cache", lambda: our_gen(False)),
    ]
    rows, outputs = [], {}
    for name, fn in variants:
        seconds, out = time_it(fn, repeats)
        outputs[name] = out
        rows.append((config_name, name, NEW / seconds))
    reference = outputs["HF generate, cache"]
    return [(*row, first_difference(outputs[row[1]], reference)) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"prompt {PROMPT}, {NEW} new tokens, greedy, batch 1")  # fmt: skip
    print(f"{'config':6} {'variant':24} {'tok/s':>9} {'vs HF cache':>12}  tokens vs HF cache")
    for config_name in args.configs:
        rows = run(config_name, args.repeats)
        hf_cache = rows[0][2]
        for cfg, name, tps, agree in rows:
            print(f"{cfg:6} {name:24} {tps:9.1f} {tps / hf_cache:11.2f}x  {agree}")
        ours = {name: tps for _, name, tps, _ in rows}
        speedup = ours["scratchllm, KV cache"] / ours["scratchllm, no cache"]
        hf_speedup = ours["HF generate, cache"] / ours["HF generate, no cache"]
        print(f"{config_name:6} KV-cache speed-up: ours {speedup:.1f}x, HF {hf_speedup:.1f}x")


if __name__ == "__main__":
    main()
