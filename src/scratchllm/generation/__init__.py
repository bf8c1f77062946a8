"""Generation: one decode loop for every model family.

``generate`` (greedy, sampling, beams; batches of unequal prompts; eos and stop strings),
``stream_generate`` (tokens or text as they come), ``beam_search`` (every beam with its
score), ``generate_batch`` / ``stream_batch`` (many requests, each with its own settings, in
one batch), ``LiveBatch`` (a batch that requests join and leave while it runs), and the
logits processors they are built from. Importing this package loads no model and reads no
files.
"""

from scratchllm.generation.batch import (
    BatchStream,
    Completion,
    Event,
    Request,
    generate_batch,
    stream_batch,
)
from scratchllm.generation.beam import BeamSearchOutput, beam_search
from scratchllm.generation.config import GenerationConfig
from scratchllm.generation.generate import generate, stream_generate
from scratchllm.generation.inputs import PromptTruncatedWarning
from scratchllm.generation.live import LiveBatch, why_not_live
from scratchllm.generation.processors import (
    ProcessorChain,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    build_processors,
)
from scratchllm.generation.text import IncrementalDecoder, TextTracker

__all__ = [
    "BatchStream",
    "BeamSearchOutput",
    "Completion",
    "Event",
    "GenerationConfig",
    "IncrementalDecoder",
    "LiveBatch",
    "ProcessorChain",
    "Request",
    "PromptTruncatedWarning",
    "RepetitionPenalty",
    "Temperature",
    "TextTracker",
    "TopK",
    "TopP",
    "beam_search",
    "build_processors",
    "generate",
    "generate_batch",
    "stream_batch",
    "stream_generate",
    "why_not_live",
]
