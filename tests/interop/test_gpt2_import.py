"""Hugging Face GPT-2 import (and export) against transformers itself: a small random
GPT2LMHeadModel saved to disk must give the same logits and greedy tokens in scratchllm."""

import json

import pytest
import torch

from scratchllm.cli import main
from scratchllm.interop import (
    convert_gpt2,
    export_gpt2,
    load_gpt2,
    load_gpt2_model,
    read_hf_config,
)
from scratchllm.models import GPT, GPTConfig, load

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEXT = (
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
    "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles. "
) * 4 + "Naïve café, 日本語 and emoji 🙂 too."


def _hf_tokenizer():
    tok = tokenizers.ByteLevelBPETokenizer()
    tok.train_from_iterator([TEXT], vocab_size=300, special_tokens=["<|endoftext|>"])
    return tok


def _hf_model(vocab_size, **overrides):
    torch.manual_seed(0)
    fields = dict(n_layer=2, n_head=4, n_embd=64, n_positions=48, vocab_size=vocab_size)
    fields.update(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    fields.update(overrides)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**fields)).eval()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny GPT-2 directory as save_pretrained writes it, plus vocab.json/merges.txt."""
    d = tmp_path_factory.mktemp("hf-gpt2")
    tok = _hf_tokenizer()
    tok.save_model(str(d))  # vocab.json + merges.txt
    model = _hf_model(tok.get_vocab_size())
    model.save_pretrained(d)
    return d, model, tok


def _ids(n=20, vocab=300, batch=2, seed=1):
    return torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(seed))


def test_logits_equal_transformers(hf_dir):
    d, hf, _ = hf_dir
    ours = load_gpt2_model(d)
    assert ours.config.act == "gelu_tanh" and ours.config.block_size == 48
    idx = _ids(vocab=ours.config.vocab_size)
    with torch.no_grad():
        want = hf(idx).logits
    torch.testing.assert_close(ours(idx)[0], want, atol=1e-5, rtol=1e-5)
    assert ours.lm_head.weight is ours.transformer.wte.weight


def test_greedy_generation_equals_transformers(hf_dir):
    from scratchllm.generation import generate

    d, hf, _ = hf_dir
    ours = load_gpt2_model(d)
    prompt = _ids(n=6, vocab=ours.config.vocab_size, batch=1, seed=2)
    with torch.no_grad():
        want = hf.generate(prompt, max_new_tokens=24, do_sample=False, pad_token_id=0)
    got = generate(ours, prompt, 24, temperature=0)
    assert torch.equal(got, want)


def test_pytorch_model_bin_untied_relu_variant(tmp_path):
    hf = _hf_model(90, activation_function="relu", tie_word_embeddings=False, n_inner=96)
    with torch.no_grad():
        hf.lm_head.weight.normal_()  # make sure the untied head really is separate
    # The older format, as transformers 4 wrote it: a pickled state dict beside config.json.
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    hf.config.to_json_file(tmp_path / "config.json")
    ours = load_gpt2_model(tmp_path)
    assert ours.config.act == "relu" and not ours.config.tie_weights
    assert ours.config.ffn_hidden == 96
    idx = _ids(vocab=90)
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)


def test_old_checkpoint_names_without_prefix_and_with_mask_buffers(tmp_path):
    from safetensors.torch import save_file

    hf = _hf_model(80)
    state = {k: v.contiguous() for k, v in hf.transformer.state_dict().items()}
    state["h.0.attn.bias"] = torch.ones(1, 1, 48, 48).tril()  # the old causal-mask buffer
    state["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(state, tmp_path / "model.safetensors")
    hf.config.to_json_file(tmp_path / "config.json")
    ours = load_gpt2_model(tmp_path)
    idx = _ids(vocab=80)
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)


def test_tokenizer_comes_across_with_the_same_ids(hf_dir):
    d, _, tok = hf_dir
    _, ours = load_gpt2(d)
    text = "whether 'tis nobler, café 🙂 <|endoftext|> arrows"
    ids = ours.encode(text, allowed_special="all")
    assert ids == tok.encode(text).ids
    assert ours.decode(ids) == text


def test_cli_convert_writes_a_loadable_checkpoint(hf_dir, tmp_path, capsys):
    d, hf, tok = hf_dir
    out = tmp_path / "ckpt"
    assert main(["convert", "--from-hf", str(d), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 layers x 4 heads x 64 wide" in printed and "tokenizer.json" in printed
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    model = load(out)
    idx = _ids(vocab=model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)
    from scratchllm.tokenizers import load as load_tokenizer

    assert load_tokenizer(out).encode("the question") == tok.encode("the question").ids

    # A second run refuses to overwrite without --force.
    assert main(["convert", "--from-hf", str(d), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["convert", "--from-hf", str(d), "--out", str(out), "--force"]) == 0


def test_tokenizer_json_alone_is_enough(tmp_path):
    tok = _hf_tokenizer()
    tok.save(str(tmp_path / "tokenizer.json"))
    _hf_model(tok.get_vocab_size()).save_pretrained(tmp_path)
    model, ours = convert_gpt2(tmp_path, tmp_path / "out")
    assert ours is not None and ours.encode("to be or not") == tok.encode("to be or not").ids
    assert isinstance(model, GPT)


def test_no_tokenizer_is_fine(tmp_path, capsys):
    _hf_model(70).save_pretrained(tmp_path)
    assert main(["convert", "--from-hf", str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    assert "no tokenizer" in capsys.readouterr().out
    assert not (tmp_path / "o" / "tokenizer.json").exists()


def test_clear_errors(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["convert", "--from-hf", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert f"{missing}: no such directory" in capsys.readouterr().err

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type 'llama' is not GPT-2"):
        read_hf_config(tmp_path)

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1}))
    with pytest.raises(FileNotFoundError, match="no weights found"):
        load_gpt2_model(tmp_path)

    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "activation_function": "silu"})
    )
    with pytest.raises(ValueError, match="activation_function 'silu' unsupported"):
        read_hf_config(tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json: missing"):
        read_hf_config(empty)


def test_weights_that_do_not_fit_the_config(hf_dir, tmp_path):
    d, _, _ = hf_dir
    for name in ("model.safetensors", "vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((d / name).read_bytes())
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_layer"] = 3
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"missing \['transformer.h.2"):
        load_gpt2_model(tmp_path)


def test_export_round_trips_through_transformers(tmp_path):
    torch.manual_seed(3)
    ours = GPT(
        GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50, act="gelu_tanh")
    ).eval()
    export_gpt2(ours, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = _ids(n=10, vocab=50)
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, ours(idx)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pos='rope'"):
        export_gpt2(GPT(GPTConfig(n_layer=1, n_head=2, n_embd=8, pos="rope")), tmp_path / "x")


def test_copy_weights_from_a_model_in_memory():
    from scratchllm.interop import copy_gpt2_weights

    hf = _hf_model(60)
    ours = GPT(read_hf_config_from(hf)).eval()
    copy_gpt2_weights(hf, ours)
    idx = _ids(vocab=60)
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="weights do not match"):
        copy_gpt2_weights(hf, GPT(GPTConfig(n_layer=1, n_head=4, n_embd=64, vocab_size=60)))


def read_hf_config_from(hf):
    c = hf.config
    return GPTConfig(
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_embd=c.n_embd,
        act="gelu_tanh",
        block_size=c.n_positions,
        vocab_size=c.vocab_size,
    )


class _NotAllowed:
    pass


def test_a_pickle_with_code_is_refused(tmp_path):
    _hf_model(50).config.to_json_file(tmp_path / "config.json")
    torch.save({"h.0.ln_1.weight": _NotAllowed()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin: cannot read the weights"):
        load_gpt2_model(tmp_path)


def test_convert_help_runs_as_a_program():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "scratchllm", "convert", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--from-hf DIR" in out.stdout and "--force" in out.stdout
