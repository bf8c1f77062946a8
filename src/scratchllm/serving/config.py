"""What a server allows: one validated dataclass, filled by ``scratchllm serve``'s flags."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback only unless told otherwise
    port: int = 8000  # 0 picks a free port
    model_name: str | None = None  # the id clients send as "model" (None: the checkpoint's name)
    api_key: str | None = None  # when set, /v1/* and the learner endpoints need "Bearer <key>"
    max_queue: int = 16  # requests waiting for the worker beyond the running one; more get 503
    max_total_tokens: int | None = None  # prompt + max_tokens per request (None: see below)
    default_max_tokens: int = 16  # /v1/completions without max_tokens (the OpenAI default)
    max_n: int = 16  # the most choices one request may ask for (n x prompts)
    max_body_bytes: int = 1 << 20  # larger request bodies get 413
    max_attention_tokens: int = 128  # /attention returns T x T per head: keep T small
    stream_interval: float = 0.05  # seconds between stream writes (the first token at once)

    def __post_init__(self) -> None:
        for name, least in (
            ("port", 0),
            ("max_queue", 0),
            ("default_max_tokens", 1),
            ("max_n", 1),
            ("max_body_bytes", 1),
            ("max_attention_tokens", 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if not 0 <= self.stream_interval <= 1:
            raise ValueError(
                f"stream_interval must be in [0, 1] seconds, got {self.stream_interval}"
            )
        if self.port > 65535:
            raise ValueError(f"port must be at most 65535, got {self.port}")
        if self.max_total_tokens is not None and self.max_total_tokens < 2:
            raise ValueError(f"max_total_tokens must be >= 2, got {self.max_total_tokens}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty; pass a real key or none")

    def total_token_limit(self, context_length: int) -> int:
        """The prompt + max_tokens limit: the configured one, else the model's context or
        2048, whichever is larger, and at most 32768 (generation slides past the context
        exactly, see docs/generation.md, so a small model is not held to its window; an
        RNN's context is unbounded)."""
        if self.max_total_tokens is not None:
            return self.max_total_tokens
        return max(2048, min(context_length, 32768))
