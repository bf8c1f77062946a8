"""`scratchllm export CKPT --to hf DIR`: transformers reads the directory back with our
logits (GPT2LMHeadModel, atol 1e-5) and our token ids (its fast tokenizer); what has no
GPT-2 equivalent is refused by name and nothing is written."""

from __future__ import annotations

import json

import pytest
import torch

from scratchllm.checkpoint import save_checkpoint
from scratchllm.cli import main
from scratchllm.models import GPT, GPTConfig
from scratchllm.tokenizers import BPETokenizer, CharTokenizer

transformers = pytest.importorskip("transformers")

TEXT = "Hello world! The quick brown fox, naïve café 🙂, jumps over 42 lazy dogs.\n" * 30
SAMPLES = ["Hello world!", "  spaced   out\n\nlines", "café 🙂 naïve", "x<|endoftext|>y", ""]


def randomised(model: GPT, seed: int = 0) -> GPT:
    """Every parameter drawn at random (biases and norm gains too): a parity test on fresh
    init would not see a bias or gain put in the wrong place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def checkpoint(tmp_path, pattern="gpt2", tokenizer="bpe", **config):
    if tokenizer == "bpe":
        tok = BPETokenizer.train(TEXT, 300, pattern=pattern, special_tokens=["<|endoftext|>"])
    else:
        tok = CharTokenizer.train(TEXT)
    base = dict(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)
    model = randomised(GPT(GPTConfig(**(base | config))))
    path = tmp_path / "run"
    save_checkpoint(path / "last", model, tok)
    return path, model, tok


@pytest.mark.parametrize(
    ("pattern", "config"),
    [
        ("gpt2", {}),
        ("gpt2", {"tie_weights": False, "act": "gelu_tanh"}),
        ("gpt4", {"act": "relu", "ffn_hidden": 24}),
    ],
)
def test_transformers_reads_our_logits_and_ids(tmp_path, pattern, config):
    path, model, tok = checkpoint(tmp_path, pattern, **config)
    out = tmp_path / "hf"
    assert main(["export", str(path), "--to", "hf", str(out)]) == 0
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    ids = torch.tensor(
        [tok.encode("The quick brown fox 🙂")[:6], tok.encode("Hello world! 42")[:6]]
    )
    with torch.no_grad():
        ours = model(ids)[0]
        theirs = hf(ids).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)

    fast = transformers.AutoTokenizer.from_pretrained(out)
    assert fast.is_fast
    for text in SAMPLES:
        assert fast.encode(text) == tok.encode(text, allowed_special="all"), text
        assert fast.decode(tok.encode(text, allowed_special="all")) == text
    eot = tok.special_tokens["<|endoftext|>"]
    assert fast.eos_token_id == eot == hf.config.eos_token_id
    written = json.loads((out / "tokenizer_config.json").read_text())
    assert written["model_max_length"] == 32


def test_generate_in_transformers_matches_ours(tmp_path):
    from scratchllm.generation import generate

    path, model, tok = checkpoint(tmp_path)
    out = tmp_path / "hf"
    main(["export", str(path), "--to", "hf", str(out)])
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    prompt = torch.tensor([tok.encode("Hello")])
    theirs = hf.generate(
        prompt, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    assert theirs.tolist() == generate(model, prompt, 12, temperature=0).tolist()


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"pos": "rope"}, "pos='rope'"),
        ({"pos": "sinusoidal"}, "pos='sinusoidal'"),
        ({"norm": "rmsnorm"}, "norm='rmsnorm'"),
        ({"ffn": "moe"}, "ffn='moe'"),
        ({"bias": False}, "bias=False"),
    ],
)
def test_what_gpt2_cannot_hold_is_named(tmp_path, capsys, config, named):
    path, _, _ = checkpoint(tmp_path, **config)
    out = tmp_path / "hf"
    assert main(["export", str(path), "--to", "hf", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and "cannot export" in err
    assert not out.exists(), "nothing is written when the export is refused"
    assert not any(p.name.startswith(".hf.") for p in tmp_path.iterdir())


def test_a_char_tokenizer_is_named_and_can_be_left_out(tmp_path, capsys):
    path, model, _ = checkpoint(tmp_path, tokenizer="char", pos="rope")
    out = tmp_path / "hf"
    assert main(["export", str(path), "--to", "hf", str(out)]) == 2
    err = capsys.readouterr().err
    assert "char tokenizer has no Hugging Face equivalent" in err and "pos='rope'" in err
    path, model, _ = checkpoint(tmp_path / "ok", tokenizer="char")
    assert main(["export", str(path), "--to", "hf", str(out), "--no-tokenizer"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids)[0], atol=1e-5, rtol=0)


def test_other_families_and_formats_are_refused(tmp_path, capsys):
    from scratchllm.models.ngram import NGram, NGramConfig

    tok = CharTokenizer.train("abc")
    save_checkpoint(tmp_path / "ngram", NGram(NGramConfig(n=2, vocab_size=tok.vocab_size)), tok)
    assert main(["export", str(tmp_path / "ngram"), "--to", "hf", str(tmp_path / "o")]) == 2
    assert "'ngram' model has no Hugging Face GPT-2 equivalent" in capsys.readouterr().err
    path, _, _ = checkpoint(tmp_path)
    assert main(["export", str(path), "--to", "onnx", str(tmp_path / "o")]) == 2
    assert "unknown format" in capsys.readouterr().err


def test_a_lora_adapter_loads_with_peft_onto_the_export(tmp_path):
    """An adapter saved in peft's layout (models/lora.py) on the exported GPT-2 gives the
    logits of our adapted model."""
    lora = pytest.importorskip("scratchllm.models.lora")  # post-training I's LoRA
    peft = pytest.importorskip("peft")
    import copy

    path, model, tok = checkpoint(tmp_path)
    main(["export", str(path), "--to", "hf", str(tmp_path / "hf")])
    adapted = lora.apply_lora(copy.deepcopy(model), lora.LoRAConfig(r=4, alpha=8))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # B starts at zero: make the update real, or the test is empty
        for layer in lora.lora_layers(adapted).values():
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g))
    lora.save_adapter(adapted, tmp_path / "adapter")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")
    hf_adapted = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    ids = torch.tensor([tok.encode("The quick brown fox")[:8]])
    with torch.no_grad():
        ours, base = adapted.eval()(ids)[0], model(ids)[0]
        theirs = hf_adapted(input_ids=ids).logits
    assert (ours - base).abs().max() > 1e-2, "the adapter changes nothing"
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
