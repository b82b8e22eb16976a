"""Generation: batched == one by one, streaming == non-streaming, settings validation, dialogue."""

import pytest

from workbench.core.errors import WorkbenchError
from workbench.core.chat import run_dialogue
from workbench.core.generation import GenerationSettings, generate, stream
from workbench.core.models import ModelCache

PROMPTS = ["Alice was beginning to get very tired", "Once upon a midnight dreary", "Hi"]


@pytest.fixture
def loaded(ctx):
    return ModelCache().get(ctx.registry, "tiny-neo")


def test_batch_gives_the_same_greedy_texts_as_one_by_one(loaded):
    settings = GenerationSettings(max_new_tokens=10)
    batch = generate(loaded, PROMPTS, settings)
    single = [generate(loaded, [p], settings)[0] for p in PROMPTS]
    assert [b.text for b in batch] == [s.text for s in single]
    assert [b.prompt for b in batch] == PROMPTS
    assert all(b.new_tokens == 10 for b in batch)


def test_streaming_yields_the_same_text_as_non_streaming(loaded):
    settings = GenerationSettings(max_new_tokens=12)
    pieces = list(stream(loaded, PROMPTS[1], settings))
    assert len(pieces) > 1
    assert "".join(pieces) == generate(loaded, [PROMPTS[1]], settings)[0].text


def test_sampling_with_a_seed_is_reproducible(loaded):
    settings = GenerationSettings(max_new_tokens=8, do_sample=True, temperature=0.9, top_k=20,
                                  top_p=0.9, seed=7, num_return_sequences=2)
    first, second = generate(loaded, ["Alice"], settings), generate(loaded, ["Alice"], settings)
    assert len(first) == 2 and [o.text for o in first] == [o.text for o in second]


@pytest.mark.parametrize("changes, message", [
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"do_sample": True, "temperature": 0.0}, "temperature"), ({"top_k": -1}, "top_k"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"), ({"num_return_sequences": 2}, "sampling"),
])
def test_invalid_settings_are_refused(changes, message):
    with pytest.raises(WorkbenchError, match=message):
        GenerationSettings(**changes).validate()


def test_long_prompt_is_cut_from_the_left_with_a_warning(loaded):
    warnings = []
    long_prompt = "word " * 400  # > 256 tokens of context
    output = generate(loaded, [long_prompt], GenerationSettings(max_new_tokens=4), warn=warnings.append)[0]
    assert output.truncated_prompt and output.new_tokens == 4
    assert warnings and "kept its last 252 tokens" in warnings[0]


def test_max_new_tokens_beyond_context_is_refused(loaded):
    with pytest.raises(WorkbenchError, match="below the context"):
        generate(loaded, ["x"], GenerationSettings(max_new_tokens=256))


def test_dialogue_alternates_speakers_and_sees_the_transcript(loaded):
    turns = list(run_dialogue((loaded, loaded), "Who are you?", 3, GenerationSettings(max_new_tokens=6)))
    assert [t.speaker for t in turns] == ["A", "B", "A"]
    assert all(t.text and t.model == "tiny-neo" for t in turns)
    with pytest.raises(WorkbenchError, match="turns"):
        list(run_dialogue((loaded, loaded), "x", 0, GenerationSettings()))


def test_a_set_stop_event_ends_generation_and_the_dialogue(loaded):
    import threading

    stop = threading.Event()
    stop.set()
    output = generate(loaded, ["Alice"], GenerationSettings(max_new_tokens=50), stop=stop)[0]
    assert output.new_tokens <= 1  # stops after the first token instead of producing 50
    assert list(run_dialogue((loaded, loaded), "Hi", 4, GenerationSettings(max_new_tokens=50), stop=stop)) == []
