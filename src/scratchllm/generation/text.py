"""Token ids to text while they are generated: ``IncrementalDecoder`` (complete characters
only) and ``TextTracker`` (stop strings).

They live in ``scratchllm.tokenizers.streaming``, torch-free, so that the NumPy engine's
sampler uses the same ones without importing this package (whose ``__init__`` loads the
PyTorch decode loop); they are re-exported here where the decode loop uses them.
"""

from scratchllm.tokenizers.streaming import Decode, IncrementalDecoder, TextTracker, decode_function

__all__ = ["Decode", "IncrementalDecoder", "TextTracker", "decode_function"]
