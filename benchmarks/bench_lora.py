"""LoRA and QLoRA: what trains, what the frozen base weighs, and what a step costs.

One process, the same GPT weights for every contender:

1. **Parameters and storage.** The trainable fraction with LoRA (r = 8 on every block's
   c_attn, c_proj and c_fc), and the frozen base's bytes per parameter held in fp32, in
   NF4 (fp32 absmax per 64 weights) and NF4 with double quantization (FP8 scales per 256).
   "weights only" counts the quantized matrices alone; "whole base" adds the embeddings,
   norms and biases, which stay fp32.
2. **Reconstruction.** The relative Frobenius error ``|W - deq(q(W))| / |W|`` of each kind
   of weight (mean and max over layers), and how far the quantized model's logits move
   (relative L2 and max abs), on a random GPT (GPT-2 initialisation: N(0, 0.02) weights)
   or, with ``--from CKPT``, on a trained checkpoint.
3. **Step time and state.** forward + backward + AdamW step + zero_grad (fp32, CPU) of full
   fine-tuning, our LoRA, peft's LoRA (``get_peft_model`` on the same GPT, same config)
   and our QLoRA (NF4, NF4 + double quant). Rounds alternate so that load from other
   processes hits all alike; the table shows medians and ratios. "state" is what a step
   holds besides activations: the model's tensors, the gradients and AdamW's moments.

    python benchmarks/bench_lora.py              # small (4 x 128) and baby (6 x 384)
    python benchmarks/bench_lora.py --quick      # small only, fewer steps
    python benchmarks/bench_lora.py --configs --from run/best --text data.txt
        # reconstruction on a trained model too, and its held-out loss dense vs 4-bit
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from pathlib import Path

import torch

from scratchllm.models import GPT, GPTConfig, load
from scratchllm.models.lora import LoRAConfig, apply_lora, base_storage
from scratchllm.models.nf4 import NF4Config, NF4Linear, quantize_model

CONFIGS = {
    # name: (n_layer, n_head, n_embd, block T, batch B, warm-up steps, timed steps per round)
    "small": (4, 4, 128, 64, 12, 3, 5),
    "baby": (6, 6, 384, 256, 8, 1, 2),
}
VOCAB = 65
LORA = LoRAConfig(r=8, alpha=16, targets=("c_attn", "c_proj", "c_fc"))
QUANT = {"nf4": NF4Config(), "nf4+dq": NF4Config(double_quant=True)}


def make_gpt(L: int, H: int, C: int, T: int) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=L, n_head=H, n_embd=C, block_size=T, vocab_size=VOCAB))


def contenders(base: GPT) -> dict[str, torch.nn.Module]:
    """Each way of fine-tuning, on its own copy of the same weights."""
    import peft

    out = {"full": copy.deepcopy(base).train(), "lora": apply_lora(copy.deepcopy(base), LORA)}
    peft_config = peft.LoraConfig(
        r=LORA.r, lora_alpha=LORA.alpha, target_modules=list(LORA.targets)
    )
    out["peft"] = peft.get_peft_model(copy.deepcopy(base), peft_config)
    for name, q in QUANT.items():
        model = copy.deepcopy(base)
        quantize_model(model, q)
        out[f"q{name}"] = apply_lora(model, LORA)
    for model in out.values():
        model.train()
    return out


def storage_table(base: GPT, models: dict[str, torch.nn.Module]) -> None:
    total = base.num_parameters()
    lora = models["lora"]
    print(
        f"  parameters: {total:,}; LoRA r={LORA.r} on {','.join(LORA.targets)} trains "
        f"{lora.num_parameters():,} ({100 * lora.num_parameters() / total:.2f} %)"
    )
    peft_trainable = sum(p.numel() for p in models["peft"].parameters() if p.requires_grad)
    print(f"  peft trains {peft_trainable:,} (same: {peft_trainable == lora.num_parameters()})")
    print(
        f"  {'frozen base':<14} {'whole base B/param':>19} {'weights only B/param':>21} {'MB':>7}"
    )
    rows = [("fp32", lora)] + [(name, models[f"q{name}"]) for name in QUANT]
    for name, model in rows:
        n_bytes, n_params = base_storage(model)
        nf4 = [m for m in model.modules() if isinstance(m, NF4Linear)]
        if nf4:
            w_only = sum(m.weight_nbytes() for m in nf4) / sum(
                m.in_features * m.out_features for m in nf4
            )
        else:
            w_only = 4.0
        print(f"  {name:<14} {n_bytes / n_params:>19.4f} {w_only:>21.4f} {n_bytes / 1e6:>7.2f}")


def reconstruction_table(base: torch.nn.Module, label: str) -> None:
    x = torch.randint(
        0,
        base.config.vocab_size,
        (4, min(64, base.config.block_size)),
        generator=torch.Generator().manual_seed(1),
    )
    with torch.no_grad():
        ref = base.eval()(x)[0]
    print(
        f"  reconstruction on {label}: relative Frobenius error per weight (mean / max over layers)"
    )
    kinds = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    print(
        f"  {'':<8}" + "".join(f"{k:>22}" for k in kinds) + f"{'logits rel L2':>15}{'max abs':>10}"
    )
    for name, q in QUANT.items():
        model = copy.deepcopy(base)
        quantize_model(model, q)
        errs = {k: [] for k in kinds}
        for mod_name, m in model.named_modules():
            if isinstance(m, NF4Linear):
                w = base.get_submodule(mod_name).weight
                kind = next(k for k in kinds if mod_name.endswith(k))
                errs[kind].append(((m.dequantize() - w).norm() / w.norm()).item())
        with torch.no_grad():
            out = model.eval()(x)[0]
        cells = "".join(f"{statistics.mean(errs[k]):>13.4f} / {max(errs[k]):.4f}" for k in kinds)
        print(
            f"  {name:<8}{cells}{((out - ref).norm() / ref.norm()).item():>15.4f}"
            f"{(out - ref).abs().max().item():>10.4f}"
        )


def heldout_loss_table(directory: str, text_path: str, max_rows: int = 400) -> None:
    """Cross-entropy of the checkpoint, dense and quantized, on the last 10 % of a text
    file (encoded with the checkpoint's tokenizer): what 4 bits cost a trained model."""
    from scratchllm.tokenizers import load as load_tokenizer

    model, tok = load(directory), load_tokenizer(directory)
    text = Path(text_path).read_text(encoding="utf-8")
    ids = torch.tensor(tok.encode(text[-len(text) // 10 :]))
    T = min(64, model.config.block_size)
    n = (ids.numel() - 1) // T * T
    x, y = ids[:n].view(-1, T)[:max_rows], ids[1 : n + 1].view(-1, T)[:max_rows]
    with torch.no_grad():
        dense = model(x, y)[1].item()
        print(f"  held-out loss on {x.numel():,} tokens of {text_path}: dense {dense:.4f}", end="")
        for name, q in QUANT.items():
            quantized = copy.deepcopy(model)
            quantize_model(quantized, q)
            loss = quantized(x, y)[1].item()
            print(f", {name} {loss:.4f} ({loss - dense:+.4f})", end="")
    print()


def step_fn(model: torch.nn.Module, batch: torch.Tensor):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    x, y = batch[:, :-1], batch[:, 1:]

    def step() -> None:
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, opt


def training_state_bytes(model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    """What a training step holds besides activations: the model's tensors (each once),
    a gradient per trainable parameter, and AdamW's two moments (after a step)."""
    tensors = {id(t): t for t in model.state_dict(keep_vars=True).values()}
    n = sum(t.numel() * t.element_size() for t in tensors.values())
    n += sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    for state in opt.state.values():
        n += sum(v.numel() * v.element_size() for v in state.values() if v.dim() > 0)
    return n


def time_steps(
    models: dict[str, torch.nn.Module], T: int, B: int, warm: int, steps: int, rounds: int
) -> dict[str, tuple[float, float, int]]:
    """Median (wall, CPU) seconds per step of each model, and its training state in
    bytes. CPU time (this process, all threads) is the steadier figure on a shared
    machine; wall time is the one that counts on a quiet one."""
    batch = torch.randint(0, VOCAB, (B, T + 1), generator=torch.Generator().manual_seed(0))
    fns = {name: step_fn(m, batch) for name, m in models.items()}
    for fn, _ in fns.values():
        for _ in range(max(warm, 1)):
            fn()
    wall = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for _ in range(rounds):
        for name, (fn, _) in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                fn()
            wall[name].append((time.perf_counter() - t0) / steps)
            cpu[name].append((time.process_time() - c0) / steps)
    return {
        n: (statistics.median(wall[n]), statistics.median(cpu[n]),
            training_state_bytes(models[n], fns[n][1]))
        for n in models
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small config only, fewer rounds")
    parser.add_argument(
        "--from", dest="ckpt", help="a trained checkpoint for the reconstruction table"
    )
    parser.add_argument("--text", help="with --from: a text file for the held-out loss")
    parser.add_argument(
        "--configs",
        nargs="*",
        choices=list(CONFIGS),
        default=None,
        help="model sizes to time (default: all; --quick: small; none: only --from)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="timing rounds (default 5, quick 3)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 5)
    configs = (
        args.configs if args.configs is not None else ["small"] if args.quick else list(CONFIGS)
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU")
    for name in configs:
        L, H, C, T, B, warm, steps = CONFIGS[name]
        print(f"\n{name}: {L} layers x {H} heads x {C} wide, block {T}, batch {B}, vocab {VOCAB}")
        base = make_gpt(L, H, C, T)
        models = contenders(base)
        storage_table(base, models)
        reconstruction_table(base, "a random GPT (N(0, 0.02) weights)")
        times = time_steps(models, T, B, warm, steps, rounds)
        (full_w, full_c, full_m), (peft_w, peft_c, _) = times["full"], times["peft"]
        print(
            f"  step (forward + backward + AdamW), median of {rounds} rounds x {steps}; "
            "state = weights + grads + AdamW moments"
        )
        print(
            f"  {'':<10}{'wall ms':>9}{'vs full':>9}{'vs peft':>9}"
            f"{'cpu ms':>10}{'vs full':>9}{'vs peft':>9}{'state MB':>10}{'vs full':>9}"
        )
        for k, (w, c, m) in times.items():
            print(
                f"  {k:<10}{1e3 * w:>9.1f}{w / full_w:>9.2f}{w / peft_w:>9.2f}"
                f"{1e3 * c:>10.1f}{c / full_c:>9.2f}{c / peft_c:>9.2f}"
                f"{m / 1e6:>10.2f}{m / full_m:>9.3f}"
            )
    if args.ckpt:
        print()
        reconstruction_table(load(args.ckpt), args.ckpt)
        if args.text:
            heldout_loss_table(args.ckpt, args.text)


if __name__ == "__main__":
    main()
