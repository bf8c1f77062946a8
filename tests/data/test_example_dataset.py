"""ExampleDataset: examples rendered into rows, the mask on what is learned, padding never
trained on, packing that keeps every example whole, a split and draws that are seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scratchllm.data import ChatTemplate, Example, ExampleDataset, PackedBatch
from scratchllm.models import GPT, GPTConfig
from scratchllm.tokenizers import CharTokenizer

TOK = CharTokenizer.train("0123456789+=\n abcdefghij")


def examples(n: int = 20, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, b = (int(v) for v in rng.integers(0, 10 ** (1 + i % 3), size=2))
        out.append(Example.from_pair(f"{a}+{b}=", f"{a + b}", f"ex {i}"))
    return out


@pytest.fixture
def chat():
    return ChatTemplate.create(TOK)


def test_rows_hold_the_template_ids_and_the_reply_mask(chat):
    ds = ExampleDataset.from_examples(examples(), chat, max_length=64, seed=0)
    for ids, mask in zip(ds.ids, ds.masks):
        text = chat.tokenizer.decode(ids.tolist())
        assert text.startswith("<|user|>") and text.endswith("<|end|>")
        learned = chat.tokenizer.decode(ids[mask].tolist())
        assert learned.endswith("<|end|>") and "<|assistant|>" not in learned
        assert "+" not in learned  # nothing of the prompt
    s = ds.stats
    assert (s.n_train, s.n_val) == (18, 2) and s.truncated == s.dropped == 0
    assert s.learned == sum(int(m[1:].sum()) for m in ds.masks)


def test_train_on_prompt_learns_every_token_but_the_first(chat):
    ds = ExampleDataset.from_examples(examples(), chat, max_length=64, train_on_prompt=True)
    for mask in ds.masks:
        assert not mask[0] and mask[1:].all()


def test_a_prefix_is_never_learned():
    plain = ChatTemplate.plain(TOK)
    newline = TOK.encode("\n")
    ds = ExampleDataset.from_examples(examples(), plain, max_length=64, prefix=newline)
    for ids, mask in zip(ds.ids, ds.masks):
        assert ids[0] == newline[0] and not mask[0]
        text = TOK.decode(ids.tolist())
        assert TOK.decode(ids[mask].tolist()) == text.split("=")[1]


def test_long_examples_are_cut_and_those_left_with_nothing_to_learn_dropped(chat):
    talk = [Example.from_pair("1+1=", "2", "short"), Example.from_pair("9" * 30, "a", "long")]
    talk += [Example.from_pair("2+2=", "4", "short")]
    ds = ExampleDataset.from_examples(talk, chat, max_length=12)
    assert ds.stats.truncated == 1 and ds.stats.dropped == 1 and len(ds.ids) == 2
    with pytest.raises(ValueError, match="1 usable example"):
        ExampleDataset.from_examples(talk[:2], chat, max_length=12)


def test_a_bad_example_names_its_source(chat):
    bad = [
        Example.from_pair("1+1=", "2", "file.jsonl:3"),
        Example.from_pair("x", "é", "file.jsonl:7"),
    ]
    with pytest.raises(ValueError, match="file.jsonl:7"):
        ExampleDataset.from_examples(bad, chat, max_length=32)


def test_padded_batches_put_padding_out_of_the_loss(chat):
    ds = ExampleDataset.from_examples(examples(), chat, max_length=64)
    x, y, m = ds.get_batch("train", 6, 63, rng=3)
    lengths = (y != -1).sum(1)
    assert len(set(lengths.tolist())) > 1  # unequal examples in one batch
    assert x.shape[1] == lengths.max()  # padded to the longest of the batch
    assert not m[y == -1].any()
    # Any padding ids give the same loss: padding is never trained on (and never attended to)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=ds.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=64))
    _, loss = model(x, y, m)
    other = x.clone()
    other[y == -1] = 5
    _, loss2 = model(other, y, m)
    torch.testing.assert_close(loss, loss2)


def test_packed_batches_hold_whole_examples_and_their_documents(chat):
    ds = ExampleDataset.from_examples(examples(40), chat, max_length=32, pack=True)
    batch = ds.get_batch("train", 4, 31, rng=0)
    assert isinstance(batch, PackedBatch) and batch.x.shape == (4, 31)
    rows = {tuple(ids[:-1].tolist()) for ids in ds.ids}
    n_docs = 0
    for r in range(4):
        docs = batch.documents[r]
        for d in docs.unique().tolist():
            where = (docs == d).nonzero().flatten()
            assert torch.equal(where, torch.arange(where[0], where[-1] + 1))  # contiguous
            seg = tuple(batch.x[r, where].tolist())
            if batch.mask[r, where].any():
                assert seg in rows  # a whole example
                n_docs += 1
            else:
                assert (batch.y[r, where] == -1).all()  # the padding document
    assert n_docs > 4  # several examples share a row


def test_draws_are_seeded_and_splits_are_disjoint(chat):
    ds = ExampleDataset.from_examples(examples(30), chat, max_length=64, val_fraction=0.2)
    a = ds.get_batch("train", 8, 63, rng=np.random.default_rng(5))
    b = ds.get_batch("train", 8, 63, rng=np.random.default_rng(5))
    assert all(torch.equal(s, t) for s, t in zip(a, b))
    train = {tuple(ds.ids[i]) for i in ds.split("train")}
    val = {tuple(ds.ids[i]) for i in ds.split("val")}
    assert len(val) == 6 and not train & val
    same = ExampleDataset.from_examples(examples(30), chat, max_length=64, val_fraction=0.2)
    assert same.fingerprint() == ds.fingerprint()
    other = ExampleDataset.from_examples(examples(30), chat, max_length=64, seed=1)
    assert other.fingerprint() != ds.fingerprint()


def test_bad_arguments(chat):
    with pytest.raises(ValueError, match="val_fraction"):
        ExampleDataset.from_examples(examples(), chat, max_length=64, val_fraction=0.0)
    with pytest.raises(ValueError, match="split"):
        ExampleDataset.from_examples(examples(), chat, max_length=64).get_batch("test", 2, 8)
