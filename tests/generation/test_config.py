"""One settings object for generate, stream_generate and beam_search: GenerationConfig as
``config=``, keywords laid over it, and unknown names refused."""

import pytest
import torch

from scratchllm.generation import GenerationConfig, beam_search, generate, stream_generate


def test_a_config_object_and_keywords_give_the_same_tokens(toy):
    model = toy()
    config = GenerationConfig(max_new_tokens=9, temperature=0.7, top_k=5, seed=3)
    by_config = generate(model, [1, 2, 3], config=config)
    by_keywords = generate(model, [1, 2, 3], 9, temperature=0.7, top_k=5, seed=3)
    assert torch.equal(by_config, by_keywords)
    streamed = list(stream_generate(model, [1, 2, 3], config=config))
    assert streamed == by_config[0, 3:].tolist()


def test_keywords_override_the_config(toy):
    model = toy()
    config = GenerationConfig(max_new_tokens=9, temperature=0.7, seed=3)
    greedy = generate(model, [1, 2], 5, temperature=0)
    assert torch.equal(generate(model, [1, 2], 5, config=config, temperature=0), greedy)
    assert generate(model, [1, 2], config=config).shape == (1, 11)


def test_beam_search_takes_the_config_too(toy):
    model = toy()
    config = GenerationConfig(max_new_tokens=6, num_beams=3, num_return_sequences=2)
    a = beam_search(model, [[1, 2]], config=config)
    b = beam_search(model, [[1, 2]], 6, 3, num_return_sequences=2)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.scores, b.scores)
    assert torch.equal(generate(model, [[1, 2]], config=config), a.sequences[:, 0])


def test_unknown_or_missing_settings_are_clear_errors(toy):
    model = toy()
    with pytest.raises(TypeError, match=r"setting 'temprature' \(did you mean 'temperature'"):
        generate(model, [1, 2], 5, temprature=0.5)
    with pytest.raises(TypeError, match=r"stream_generate\(\) got an unknown setting 'beams'"):
        stream_generate(model, [1, 2], 5, beams=2)
    with pytest.raises(TypeError, match=r"generate\(\) needs max_new_tokens"):
        generate(model, [1, 2], temperature=0)
    with pytest.raises(TypeError, match="config must be a GenerationConfig, got dict"):
        generate(model, [1, 2], config={"max_new_tokens": 3})
    with pytest.raises(ValueError, match=r"stream_generate streams .* use beam_search\(\)"):
        stream_generate(model, [1, 2], 5, num_beams=2)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(model, [1, 2], config=GenerationConfig(5), temperature=-1)
