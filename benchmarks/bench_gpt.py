"""The GPT model against Hugging Face GPT-2 with identical weights, side by side in one process.

Two measurements for each size (fp32, CPU):

* **train step**: forward + backward + AdamW step + zero_grad on random ids
  (small: batch 12 x 64 tokens, baby: batch 8 x 256), the loop of shared/BASELINES.md
  section 2; reported as ms per step and tokens/s.
* **decode step**: one cached token, batch 1, after a 16-token prompt, 255 greedy steps;
  ours is ``forward_step`` with the preallocated KV cache, HF is its model called with
  ``past_key_values`` (the fastest HF loop; ``generate`` adds its own overhead on top,
  see bench_generate.py). Both must produce the same tokens.

Sizes: small = 4 layers x 4 heads x 128 wide, baby = 6 x 6 x 384; vocab 65, 512 positions.
Ratio = HF time / ours: above 1 means ours is faster.

    python benchmarks/bench_gpt.py                          # both sizes, 2 threads
    python benchmarks/bench_gpt.py --sizes small --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
import torch.nn.functional as F

SIZES = {"small": (4, 4, 128, 12, 64), "baby": (6, 6, 384, 8, 256)}  # L, H, C, batch, T
VOCAB, POSITIONS, PROMPT, NEW = 65, 512, 16, 256


def build_pair(n_layer: int, n_head: int, n_embd: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    from scratchllm.interop import copy_gpt2_weights
    from scratchllm.models import GPT, GPTConfig

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(
        GPT2Config(
            n_layer=n_layer,
            n_head=n_head,
            n_embd=n_embd,
            n_positions=POSITIONS,
            vocab_size=VOCAB,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=None,
            eos_token_id=None,
        )
    )
    ours = GPT(
        GPTConfig(
            n_layer=n_layer,
            n_head=n_head,
            n_embd=n_embd,
            block_size=POSITIONS,
            vocab_size=VOCAB,
            act="gelu_tanh",
        )
    )
    copy_gpt2_weights(hf, ours)
    return hf, ours


def hf_loss(hf, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(hf(x).logits.flatten(0, 1), y.flatten())


def our_loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x, y)[1]


def train_step_time(model, forward, batch: int, T: int, repeats: int, warmup: int = 2) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, VOCAB, (batch, T + 1), generator=g)
    x, y = idx[:, :-1], idx[:, 1:]
    model.train()
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        loss = forward(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    model.eval()
    return statistics.median(times)


def decode_hf(hf, prompt: torch.Tensor):
    with torch.inference_mode():
        out = hf(prompt, use_cache=True)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        tokens = [tok]
        t0 = time.perf_counter()
        for _ in range(NEW - 1):
            out = hf(tok, past_key_values=out.past_key_values, use_cache=True)
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(tok)
        return (time.perf_counter() - t0) / (NEW - 1), torch.cat(tokens, 1)


def decode_ours(model, prompt: torch.Tensor):
    with torch.inference_mode():
        state = model.new_state(1, PROMPT + NEW)
        tok = model.forward_step(prompt, state)[:, -1].argmax(-1, keepdim=True)
        tokens = [tok]
        t0 = time.perf_counter()
        for _ in range(NEW - 1):
            tok = model.forward_step(tok, state)[:, -1].argmax(-1, keepdim=True)
            tokens.append(tok)
        return (time.perf_counter() - t0) / (NEW - 1), torch.cat(tokens, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    print(f"{'size':6} {'measure':12} {'HF':>12} {'ours':>12} {'ratio HF/ours':>14}")
    for size in args.sizes:
        n_layer, n_head, n_embd, batch, T = SIZES[size]
        hf, ours = build_pair(n_layer, n_head, n_embd)

        t_hf = train_step_time(hf, partial(hf_loss, hf), batch, T, args.repeats)
        t_ours = train_step_time(ours, partial(our_loss, ours), batch, T, args.repeats)
        tok = batch * T
        print(
            f"{size:6} {'train step':12} {t_hf * 1e3:9.1f} ms {t_ours * 1e3:9.1f} ms "
            f"{t_hf / t_ours:13.2f}x   ({tok / t_hf:,.0f} vs {tok / t_ours:,.0f} tok/s)"
        )

        hf_copy, ours_copy = build_pair(n_layer, n_head, n_embd)  # fresh, untrained weights
        prompt = torch.randint(0, VOCAB, (1, PROMPT), generator=torch.Generator().manual_seed(1))
        hf_times, our_times = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            t, hf_tokens = decode_hf(hf_copy.eval(), prompt)
            hf_times.append(t)
            t, our_tokens = decode_ours(ours_copy.eval(), prompt)
            our_times.append(t)
            if not torch.equal(hf_tokens, our_tokens):
                raise SystemExit(f"{size}: greedy tokens differ from HF's")
        t_hf, t_ours = statistics.median(hf_times), statistics.median(our_times)
        print(
            f"{size:6} {'decode step':12} {t_hf * 1e3:9.3f} ms {t_ours * 1e3:9.3f} ms "
            f"{t_hf / t_ours:13.2f}x   ({1 / t_hf:,.0f} vs {1 / t_ours:,.0f} tok/s, same tokens)"
        )


if __name__ == "__main__":
    main()
