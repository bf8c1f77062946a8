"""Packed rows: each example in a row scores exactly as it would alone (block-diagonal
attention, positions restarting per example), for every kind of position."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scratchllm.models import GPT, GPTConfig
from scratchllm.models.layers.documents import document_attention

V = 13


def gpt(pos: str, block_size: int = 24) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=V, n_layer=2, n_head=2, n_embd=16, block_size=block_size, pos=pos, dropout=0.0
    )
    return GPT(cfg).eval()


def test_mask_and_positions():
    mask, pos = document_attention(torch.tensor([[0, 0, 1, 1, 1, 2], [5, 5, 5, 5, 5, 5]]))
    assert pos.tolist() == [[0, 1, 0, 1, 2, 0], [0, 1, 2, 3, 4, 5]]
    m = mask[:, 0].int()
    assert m[0].tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ]
    assert torch.equal(m[1], torch.ones(6, 6, dtype=torch.int).tril())  # one document: causal


@pytest.mark.parametrize("pos", ["learned", "rope", "sinusoidal"])
def test_a_packed_row_gives_each_example_its_unpacked_logits_and_loss(pos):
    model = gpt(pos)
    g = torch.Generator().manual_seed(1)
    lengths = [5, 9, 3, 4]  # 21 of 24 positions, then 3 of padding
    examples = [torch.randint(0, V, (n,), generator=g) for n in lengths]
    targets = [torch.randint(0, V, (n,), generator=g) for n in lengths]
    pad = 24 - sum(lengths)
    x = torch.cat([*examples, torch.zeros(pad, dtype=torch.long)])[None]
    y = torch.cat([*targets, torch.full((pad,), -1)])[None]
    documents = torch.cat(
        [torch.full((n,), d) for d, n in enumerate(lengths)] + [torch.full((pad,), len(lengths))]
    )[None]
    with torch.no_grad():
        packed, packed_loss = model(x, y, documents=documents)
        start, total, count = 0, 0.0, 0
        for ex, tg in zip(examples, targets):
            alone, _ = model(ex[None])
            n = len(ex)
            torch.testing.assert_close(packed[0, start : start + n], alone[0], rtol=1e-5, atol=1e-5)
            total += F.cross_entropy(alone[0], tg, reduction="sum").item()
            count += n
            start += n
    assert packed_loss.item() == pytest.approx(total / count, rel=1e-5)


def test_without_documents_the_examples_would_see_each_other():
    """The same packed row as one causal sequence scores the later examples differently."""
    model = gpt("learned")
    x = torch.randint(0, V, (1, 12), generator=torch.Generator().manual_seed(2))
    documents = torch.tensor([[0] * 6 + [1] * 6])
    with torch.no_grad():
        apart, _ = model(x, documents=documents)
        together, _ = model(x)
        alone, _ = model(x[:, 6:])
    torch.testing.assert_close(apart[0, 6:], alone[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(together[0, 6:], alone[0], atol=1e-3)
    torch.testing.assert_close(apart[0, :6], together[0, :6], rtol=1e-5, atol=1e-5)


def test_documents_gradients_stay_inside_their_example():
    model = gpt("rope")
    x = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(3))
    documents = torch.tensor([[0] * 4 + [1] * 6])
    emb = model.transformer.wte
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["h"] = output

    handle = emb.register_forward_hook(keep)
    logits, _ = model(x, documents=documents)
    logits[0, 9].sum().backward()  # the last token of example 1
    handle.remove()
    grad = captured["h"].grad[0].abs().sum(-1)
    assert torch.all(grad[:4] == 0) and torch.all(grad[4:] > 0)


def test_documents_with_attention_mask_is_refused():
    model = gpt("learned")
    x = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="without attention_mask"):
        model(x, documents=torch.zeros(1, 4), attention_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(x, documents=torch.zeros(1, 3))
