"""Chat through the checkpoint's own template: the training template's shape (render_prompt,
text, end_id) seen through the server's ChatFormat, and a checkpoint that saves one."""

from __future__ import annotations

import openai
import torch

from scratchllm.serving.backend import TemplateChatFormat, load_chat_format


class ShapedLikeChatTemplate:
    """The interface of ``scratchllm.data.chat.ChatTemplate`` that the server reads."""

    def __init__(self) -> None:
        self.seen: list = []

    def render_prompt(self, messages):
        self.seen.append(messages)
        return [len(m["content"]) for m in messages] + [99]

    def text(self, messages, prompt=False):
        return "|".join(f"{m['role']}:{m['content']}" for m in messages) + ("|A:" if prompt else "")

    end_id = 7


def test_the_template_is_read_through_chat_format():
    template = ShapedLikeChatTemplate()
    chat = TemplateChatFormat(template)
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert chat.prompt_ids(messages) == [9, 2, 99]
    assert template.seen[0][0] == {"role": "system", "content": "Be brief."}
    assert chat.prompt_text(messages) == "system:Be brief.|user:Hi|A:"
    assert chat.stop_token_ids == (7,)
    template.end_id = None  # a plain template: no end token, generation runs to max_tokens
    assert chat.stop_token_ids == ()


def test_without_a_template_file_there_is_no_chat(tmp_path):
    chat, why = load_chat_format(tmp_path, tokenizer=None)
    assert chat is None and "no chat_template.json" in why


def test_a_fine_tuned_checkpoint_chats_with_its_template(tmp_path):
    from scratchllm.checkpoint import save_checkpoint
    from scratchllm.data.chat import ChatTemplate
    from scratchllm.models import GPT, GPTConfig
    from scratchllm.serving import Server, ServerConfig
    from scratchllm.serving.server import load_engine
    from scratchllm.tokenizers import CharTokenizer

    template = ChatTemplate.create(CharTokenizer.train("abcdefghijklmnopqrstuvwxyz ?!.\n"))
    tok = template.tokenizer
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(tmp_path / "chat", model, tok)
    template.save(tmp_path / "chat")
    engine = load_engine(tmp_path / "chat", ServerConfig(port=0))
    assert engine.chat_format is not None
    messages = [{"role": "system", "content": "be a bee"}, {"role": "user", "content": "hi?"}]
    with Server(engine) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        r = client.chat.completions.create(model="chat", messages=messages, max_tokens=5)
        assert r.usage.prompt_tokens == len(template.render_prompt(messages))
        forced = client.chat.completions.create(
            model="chat", messages=messages, max_tokens=5, logit_bias={str(template.end_id): 100}
        )
        assert forced.choices[0].finish_reason == "stop"
        assert forced.choices[0].message.content == ""
        import json
        import urllib.request

        request = urllib.request.Request(
            server.url + "/chat/render",
            data=json.dumps({"messages": messages}).encode(),
            headers={"Content-Type": "application/json"},
        )
        rendered = json.loads(urllib.request.urlopen(request).read())
        assert rendered["prompt"] == template.text(messages, prompt=True)
        assert rendered["ids"] == template.render_prompt(messages)
