"""Special tokens (chat roles, turn ends) in every tokenizer kind: reserved ids after the
existing ones, never produced by text unless allowed (tiktoken's rule), saved and loaded,
and equal to HF ``tokenizers`` / tiktoken where those can read the tokenizer."""

import json

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, models, pre_tokenizers

from scratchllm.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, load
from scratchllm.tokenizers import word as word_module

TEXT = "<|user|> What does json.dumps do? |> <| end Serialize obj to a JSON str.\n" * 3
CHAT = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def build(kind: str):
    if kind == "char":
        return CharTokenizer.train(TEXT, unk=True)
    if kind == "word":
        return WordTokenizer.train(TEXT)
    return BPETokenizer.train(TEXT, 300, special_tokens=["<|endoftext|>"])


KINDS = ["char", "word", "bpe"]


@pytest.fixture(params=KINDS)
def pair(request):
    base = build(request.param)
    return base, base.with_special_tokens(CHAT)


def test_specials_come_after_every_existing_id(pair):
    base, chat = pair
    n = base.vocab_size
    assert {t: chat.special_tokens[t] for t in CHAT} == {t: n + k for k, t in enumerate(CHAT)}
    assert chat.vocab_size == n + len(CHAT)
    assert chat.encode_ordinary(TEXT) == base.encode_ordinary(TEXT)  # old ids keep meaning
    assert chat.decode(list(range(n, n + len(CHAT)))) == "".join(CHAT)


def test_adding_again_keeps_ids_and_appends_only_new(pair):
    _, chat = pair
    again = chat.with_special_tokens(["<|end|>", "<|tool|>"])
    assert again.special_tokens == chat.special_tokens | {"<|tool|>": chat.vocab_size}
    assert chat.with_special_tokens(CHAT) == chat


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("<|end|>", "the string '<|end|>'"),
        (["<|a|>", "<|a|>"], "more than once"),
        ([""], "non-empty strings"),
        ([3], "non-empty strings"),
    ],
)
def test_bad_special_lists(pair, tokens, message):
    base, _ = pair
    with pytest.raises(ValueError, match=message):
        base.with_special_tokens(tokens)


def test_literal_text_never_yields_a_special_id(pair):
    _, chat = pair
    special_ids = set(chat.special_tokens.values())
    text = "".join(CHAT) + TEXT
    assert not special_ids & set(chat.encode_ordinary(text))
    if isinstance(chat, BPETokenizer):  # tiktoken's default: a special in text is an error
        with pytest.raises(ValueError, match="not allowed"):
            chat.encode(text)
        assert chat.encode(text, disallowed_special=()) == chat.encode_ordinary(text)
    else:  # char and word: a special's string is text like any other
        assert chat.encode(text) == chat.encode_ordinary(text)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["<|", "|>", "user", "end", "<", "|", ">", " ", "a"])))
def test_fragments_of_specials_never_become_specials(parts):
    text = "".join(parts)
    for kind in KINDS:
        chat = build(kind).with_special_tokens(CHAT)
        ids = chat.encode_ordinary(text)
        assert not set(chat.special_tokens.values()) & set(ids)
        allowed = chat.encode(text, allowed_special="all")
        assert allowed.count(chat.special_tokens["<|end|>"]) == text.count("<|end|>")
        assert allowed.count(chat.special_tokens["<|user|>"]) == text.count("<|user|>")
        if kind != "word":  # word: "useruser" is one word, not in the vocabulary (<unk>)
            assert chat.decode(allowed) == text


def test_allowed_special_picks_which(pair):
    _, chat = pair
    text = "<|user|>What<|end|>"
    ids = chat.encode(text, allowed_special={"<|end|>"}, **_plain(chat))
    assert ids.count(chat.special_tokens["<|end|>"]) == 1
    assert chat.special_tokens["<|user|>"] not in ids
    assert chat.decode(chat.encode(text, allowed_special="all")) == text
    with pytest.raises(ValueError, match="not special tokens"):
        chat.encode(text, allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="wrap one token in a set"):
        chat.encode(text, allowed_special="<|end|>")


def _plain(tok):
    """BPE would refuse the specials that are not allowed; let them through as text."""
    return {"disallowed_special": ()} if isinstance(tok, BPETokenizer) else {}


def test_save_load_round_trip(pair, tmp_path):
    base, chat = pair
    chat.save(tmp_path / "chat")
    back = load(tmp_path / "chat")
    assert back == chat and back.special_tokens == chat.special_tokens
    text = "<|assistant|>Serialize obj<|end|>"
    assert back.encode(text, allowed_special="all") == chat.encode(text, allowed_special="all")
    # Without added specials our own formats are written exactly as before (version 1).
    if not isinstance(base, BPETokenizer):
        before = json.loads(base.save(tmp_path / "base").read_text(encoding="utf-8"))
        after = json.loads((tmp_path / "chat" / "tokenizer.json").read_text(encoding="utf-8"))
        assert before["version"] == 1 and "special_tokens" not in before
        assert after["version"] == 2 and after["special_tokens"] == CHAT


@pytest.mark.parametrize("kind", ["char", "word"])
@pytest.mark.parametrize("bad", ["<|end|>", [""], [1], {"a": 1}])
def test_corrupt_special_list_names_the_file(tmp_path, kind, bad):
    path = build(kind).with_special_tokens(CHAT).save(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8")) | {"special_tokens": bad}
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="special_tokens") as err:
        load(tmp_path)
    assert str(path) in str(err.value)


def test_char_specials_come_after_unk():
    base = CharTokenizer.train("abc", unk=True)
    chat = base.with_special_tokens(CHAT)
    assert chat.unk_id == base.unk_id == 3
    assert chat.encode("az") == [0, 3]  # an unseen character is still <unk>, not a special
    assert chat.special_tokens["<|system|>"] == 4
    assert chat.token_to_id("<|end|>") == 7 and chat.id_to_token(7) == "<|end|>"


def test_word_special_spelled_like_a_word_is_not_reached_by_text():
    base = WordTokenizer.train("the USER said hi")
    chat = base.with_special_tokens(["USER"])
    assert chat.encode("USER") == base.encode("USER") == [base.token_to_id("USER")]
    assert chat.encode("USER", allowed_special="all") == [chat.special_tokens["USER"]]
    assert chat.words == base.words


def test_bpe_specials_round_trip_through_hf_and_tiktoken(tmp_path):
    chat = build("bpe").with_special_tokens(CHAT)
    text = "<|system|>Be brief.<|end|><|user|>What does json.dumps do?<|end|><|assistant|>"
    ids = chat.encode(text, allowed_special="all")
    hf = Tokenizer.from_file(str(chat.save(tmp_path)))
    assert hf.encode(text).ids == ids  # HF always matches its added tokens
    assert hf.decode(ids, skip_special_tokens=False) == text
    added = {t.content: i for i, t in hf.get_added_tokens_decoder().items()}
    assert added == chat.special_tokens
    assert BPETokenizer.load(tmp_path) == chat
    enc = chat.to_tiktoken()
    assert isinstance(enc, tiktoken.Encoding)
    assert enc.encode(text, allowed_special="all") == ids


def test_word_specials_equal_hf_word_level_with_added_tokens():
    chat = build("word").with_special_tokens(CHAT)
    vocab = {t: i for i, t in enumerate([*word_module.SPECIAL_TOKENS, *chat.words])}
    hf = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Split(
        Regex(word_module.PRE_TOKEN_PATTERN), behavior="isolated"
    )
    hf.add_special_tokens(CHAT)  # ids after the vocab, in order: as ours
    text = "<|user|> What does json.dumps do?<|end|><|assistant|> Serialize it<|end|>"
    assert hf.encode(text).ids == chat.encode(text, allowed_special="all")
