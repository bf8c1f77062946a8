"""GPT-2's vocab.json + merges.txt: which entries are special, held against HF ``tokenizers``
and ``transformers`` reading the same files.

A vocab.json entry that no merge makes is an ordinary byte-level token (HF decodes "Ġb" to
" b"); only tokens the files declare special (or GPT-2's <|endoftext|>, transformers'
default) are special.
"""

import json
import logging

import pytest
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from scratchllm.tokenizers import load
from scratchllm.tokenizers.bpe import BPETokenizer
from scratchllm.tokenizers.bpe_bytes import BYTE_TO_CHAR

END, EOT, NEW = "<|endoftext|>", "<|eot|>", "<|new|>"
PROBE = f"x{END}y {EOT}z a b Ġb"


def write(d, vocab, merges=(), **sidecars):
    (d / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    text = "#version: 0.2\n" + "".join(f"{m}\n" for m in merges)
    (d / "merges.txt").write_text(text, encoding="utf-8")
    for name, data in sidecars.items():
        (d / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    return d / "vocab.json", d / "merges.txt"


def hf_bpe(vocab_json, merges_txt):
    tok = Tokenizer(models.BPE.from_file(str(vocab_json), str(merges_txt)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def full_vocab():
    """Every byte, "Ġb" (no merge makes it), <|endoftext|> and <|eot|>."""
    vocab = {c: i for i, c in enumerate(BYTE_TO_CHAR)}
    return vocab | {"Ġb": 256, END: 257, EOT: 258}


def test_issue_reproducer_entry_without_merge_is_ordinary(tmp_path):
    vocab_json, merges_txt = write(tmp_path, {"a": 0, "b": 1, "Ġ": 2, "Ġb": 3})
    ours = BPETokenizer.from_gpt2_files(vocab_json, merges_txt)
    hf = hf_bpe(vocab_json, merges_txt)
    assert ours.special_tokens == {}
    assert ours.vocab[3] == b" b"
    assert ours.decode([3]) == hf.decode([3]) == " b"  # was 'Ġb'
    assert ours.encode(" b") == hf.encode(" b").ids == [2, 1]  # no merge: Ġ then b


def test_entry_without_merge_encodes_as_text(tmp_path):
    vocab = {c: i for i, c in enumerate(BYTE_TO_CHAR)} | {"Ġb": 256}
    ours = BPETokenizer.from_gpt2_files(*write(tmp_path, vocab))
    hf = hf_bpe(tmp_path / "vocab.json", tmp_path / "merges.txt")
    # "Ġb" typed as text is the characters U+0120 and b: three bytes, never token 256.
    assert ours.encode("Ġb") == hf.encode("Ġb").ids == [0xC4, 0xA0, ord("b")]
    assert ours.decode([256, 256]) == hf.decode([256, 256]) == " b b"


SIDECARS = {
    "none": {},
    "special_tokens_map": {"special_tokens_map": {"additional_special_tokens": [EOT]}},
    "added_tokens_decoder": {
        "tokenizer_config": {
            "tokenizer_class": "GPT2Tokenizer",
            "added_tokens_decoder": {"258": {"content": EOT, "special": True}},
        }
    },
    "named_eos_as_dict": {
        "special_tokens_map": {"eos_token": {"content": EOT, "lstrip": False, "rstrip": False}}
    },
    "added_beyond_vocab": {"added_tokens": {NEW: 259}},
    "defaults_off": {
        "tokenizer_config": {
            "tokenizer_class": "GPT2Tokenizer",
            "bos_token": None,
            "eos_token": None,
            "unk_token": None,
        }
    },
}
EXPECTED = {
    "none": {END: 257},
    "special_tokens_map": {END: 257, EOT: 258},
    "added_tokens_decoder": {END: 257, EOT: 258},
    "named_eos_as_dict": {END: 257, EOT: 258},  # bos and unk still default to <|endoftext|>
    "added_beyond_vocab": {END: 257, NEW: 259},
    "defaults_off": {},
}


@pytest.mark.parametrize("case", list(SIDECARS))
def test_specials_as_transformers_reads_them(tmp_path, case):
    write(tmp_path, full_vocab(), **SIDECARS[case])
    ours = load(tmp_path)  # a directory with vocab.json + merges.txt
    assert ours.special_tokens == EXPECTED[case]
    logging.getLogger("transformers").setLevel(logging.ERROR)
    theirs = transformers.GPT2Tokenizer.from_pretrained(str(tmp_path))
    assert ours.vocab_size == len(theirs)
    text = PROBE + (NEW if NEW in ours.special_tokens else "")
    ids = ours.encode(text, allowed_special="all")
    assert ids == theirs.encode(text)
    assert ours.decode(ids) == theirs.decode(ids) == text
    # What transformers never splits (its added tokens) is exactly what is special here.
    assert {t.content: i for i, t in theirs.added_tokens_decoder.items()} == EXPECTED[case]


def test_special_tokens_argument_overrides_the_files(tmp_path):
    vocab_json, merges_txt = write(tmp_path, full_vocab(), added_tokens={NEW: 259})
    ours = BPETokenizer.from_gpt2_files(vocab_json, merges_txt, special_tokens=[EOT])
    assert ours.special_tokens == {EOT: 258}
    assert ours.decode([257]) == END  # an ordinary token now: its bytes
    assert ours.encode(END) == list(END.encode())  # never 257: no merge makes it


@pytest.mark.parametrize(
    ("sidecars", "message"),
    [
        ({"special_tokens_map": {"pad_token": "<pad>"}}, "names the special token '<pad>'"),
        ({"added_tokens": {NEW: 3}}, "id 3, which vocab.json gives to"),
        ({"added_tokens": {NEW: "x"}}, "has id 'x'"),
        ({"tokenizer_config": {"added_tokens_decoder": []}}, "must map ids"),
        ({"tokenizer_config": {"added_tokens_decoder": {"5": {}}}}, "has no 'content'"),
        ({"special_tokens_map": [1]}, "JSON object"),
    ],
)
def test_bad_sidecars_name_the_file(tmp_path, sidecars, message):
    write(tmp_path, full_vocab(), **sidecars)
    with pytest.raises(ValueError, match=message) as err:
        load(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_our_files_read_back_by_us_and_transformers(tmp_path):
    text = "hello world, hello there " * 20
    tok = BPETokenizer.train(text, 300, special_tokens=[END, "<|user|>", "<|assistant|>"])
    tok.save_gpt2_files(tmp_path)
    back = load(tmp_path)
    assert back == tok
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    probe = f"<|user|>hello there{END}<|assistant|> world"
    assert theirs.encode(probe) == tok.encode(probe, allowed_special="all")
    assert len(theirs) == tok.vocab_size


def test_our_files_without_specials_add_none_in_transformers(tmp_path):
    tok = BPETokenizer.train("hello world " * 10, 270)
    tok.save_gpt2_files(tmp_path)
    assert load(tmp_path).special_tokens == {}
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(theirs) == tok.vocab_size  # no <|endoftext|> added
    assert theirs.encode(f"hi{END}") == tok.encode(f"hi{END}")
