"""Our decode loop against transformers' generate on the same GPT-2 network.

``HFAsLanguageModel`` wraps a GPT2LMHeadModel in our model contract (forward only), so
both libraries search over identical logits and any difference is in the search itself.
A second set copies the same weights into our GPT and compares end to end.
"""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from scratchllm.generation import beam_search, generate
from scratchllm.models import GPT, GPTConfig

V = 40


class HFAsLanguageModel(torch.nn.Module):
    def __init__(self, hf: GPT2LMHeadModel) -> None:
        super().__init__()
        self.hf = hf
        self.context_length = hf.config.n_positions
        self.vocab_size = hf.config.vocab_size

    def forward(self, idx, targets=None, loss_mask=None):
        return self.hf(idx).logits, None


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=V, n_positions=32, n_layer=2, n_head=2, n_embd=32, initializer_range=0.3,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=None, eos_token_id=None, pad_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def our_gpt(hf_model):
    c = hf_model.config
    model = GPT(
        GPTConfig(block_size=c.n_positions, vocab_size=V, n_layer=c.n_layer, n_head=c.n_head,
                  n_embd=c.n_embd, act="gelu_tanh")
    ).eval()  # fmt: skip
    theirs = hf_model.state_dict()
    with torch.no_grad():
        for name, p in model.state_dict().items():
            conv1d = name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))
            p.copy_(theirs[name].t() if conv1d else theirs[name])
    return model


PROMPT = torch.tensor([[5, 17, 3, 22, 9]])
EOS = [9, 32]  # ids this network does emit, so some beams end early


def hf_generate(hf, ids, **kw):
    mask = kw.pop("attention_mask", torch.ones_like(ids))
    with torch.no_grad():
        return hf.generate(ids, attention_mask=mask, pad_token_id=0, **kw)


@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_greedy_and_repetition_penalty_match_hf(hf_model, penalty):
    ours = generate(
        HFAsLanguageModel(hf_model), PROMPT, 15, temperature=0, repetition_penalty=penalty
    )
    theirs = hf_generate(
        hf_model, PROMPT, max_new_tokens=15, do_sample=False, repetition_penalty=penalty
    )
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "num_beams, length_penalty, early_stopping",
    [(3, 1.0, False), (4, 0.0, True), (4, 2.0, "never"), (5, -0.5, False)],
)
def test_beam_search_matches_hf(hf_model, num_beams, length_penalty, early_stopping):
    eos = EOS
    ours = beam_search(
        HFAsLanguageModel(hf_model), PROMPT, 10, num_beams, length_penalty=length_penalty,
        early_stopping=early_stopping, eos_token_id=eos, num_return_sequences=2,
    )  # fmt: skip
    theirs = hf_generate(
        hf_model, PROMPT, max_new_tokens=10, do_sample=False, num_beams=num_beams,
        length_penalty=length_penalty, early_stopping=early_stopping, eos_token_id=eos,
        num_return_sequences=2, output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    assert torch.equal(ours.sequences.view(2, -1), theirs.sequences)
    torch.testing.assert_close(ours.scores.view(2), theirs.sequences_scores, atol=1e-4, rtol=1e-4)


def test_beams_do_end_at_eos_in_this_setup(hf_model):
    for lp in (1.0, 0.0):
        out = beam_search(
            HFAsLanguageModel(hf_model), PROMPT, 10, 4, eos_token_id=EOS, length_penalty=lp,
            num_return_sequences=2,
        )  # fmt: skip
        assert int(out.new_tokens.min()) < 10  # the parity tests do cover beams ended by eos


def test_our_gpt_greedy_matches_hf_with_and_without_cache(hf_model, our_gpt):
    theirs = hf_generate(hf_model, PROMPT, max_new_tokens=20, do_sample=False)
    for use_cache in (True, False):
        assert torch.equal(
            generate(our_gpt, PROMPT, 20, temperature=0, use_cache=use_cache), theirs
        )


def test_our_gpt_left_padded_batch_matches_hf(hf_model, our_gpt):
    ids = torch.tensor([[0, 0, 0, 7, 8], [5, 17, 3, 22, 9], [0, 1, 2, 3, 4]])
    mask = (torch.arange(5) >= torch.tensor([3, 0, 1])[:, None]).long()
    theirs = hf_generate(hf_model, ids, attention_mask=mask, max_new_tokens=12, do_sample=False)
    ours = generate(our_gpt, ids, 12, temperature=0, attention_mask=mask)
    assert torch.equal(ours, theirs)


def test_our_gpt_beam_search_matches_hf(hf_model, our_gpt):
    ours = beam_search(our_gpt, PROMPT, 8, 3, eos_token_id=EOS, num_return_sequences=3)
    theirs = hf_generate(
        hf_model, PROMPT, max_new_tokens=8, do_sample=False, num_beams=3, eos_token_id=EOS,
        num_return_sequences=3, output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    assert torch.equal(ours.sequences.view(3, -1), theirs.sequences)
    torch.testing.assert_close(ours.scores.view(3), theirs.sequences_scores, atol=1e-4, rtol=1e-4)


def test_greedy_batch_with_eos_matches_hf(hf_model, our_gpt):
    ids = torch.tensor([[0, 0, 7, 8, 2], [5, 17, 3, 22, 9]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    kw = dict(max_new_tokens=12, do_sample=False, eos_token_id=EOS)
    theirs = hf_generate(hf_model, ids, attention_mask=mask, **kw)
    ours = generate(our_gpt, ids, 12, temperature=0, attention_mask=mask, eos_token_id=EOS,
                    pad_token_id=0)  # fmt: skip
    assert torch.equal(ours, theirs)
    assert (theirs[:, 5:] == 0).any()  # some row did end at an eos and was padded
