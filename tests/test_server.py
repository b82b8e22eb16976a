"""`workbench serve`: a real server process on loopback, driven by the official openai client."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest
from serve_helpers import ServerProcess, make_tiny_chat_model

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say something about Alice"}]


@pytest.fixture(scope="module")
def served_home(tmp_path_factory):
    from workbench.core.context import open_workspace
    from workbench.core.models import add_model

    home = tmp_path_factory.mktemp("serve-ws")
    ctx = open_workspace(home)
    folder = make_tiny_chat_model(ctx.ws.model_dir("tiny-neo"), tmp_path_factory.mktemp("src") / "tiny-chat")
    add_model(ctx.ws, ctx.registry, "tiny-chat", str(folder))
    ctx.registry.close()
    return home


@pytest.fixture(scope="module")
def server(served_home):
    process = ServerProcess(served_home, ["tiny-chat", "tiny-neo"])
    yield process
    process.stop()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)


def reference_chat(home, messages, max_new_tokens):
    """Plain transformers: the same template, greedy `generate`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = home / "models" / "tiny-chat"
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_lists_the_served_models(client):
    assert [m.id for m in client.models.list()] == ["tiny-chat", "tiny-neo"]


def test_greedy_chat_equals_transformers_generate(client, served_home):
    reply = client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=12, temperature=0)
    assert reply.choices[0].message.content == reference_chat(served_home, MESSAGES, 12)
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 5


def test_streaming_joins_to_the_same_reply_and_reports_usage(client):
    full = client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=10, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=10,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == full.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_n_choices_with_a_seed_are_reproducible(client):
    def ask():
        reply = client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=8, n=3, seed=5,
                                               temperature=1.0)
        return [c.message.content for c in reply.choices]

    first = ask()
    assert len(first) == 3 and first == ask()
    assert len(set(first)) > 1  # each choice draws on its own


def test_stop_string_cuts_the_reply(client):
    free = client.completions.create(model="tiny-neo", prompt="Alice was", max_tokens=12, temperature=0)
    text = free.choices[0].text
    stop = text[len(text) // 2: len(text) // 2 + 3]
    cut = client.completions.create(model="tiny-neo", prompt="Alice was", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].text == text[:text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_min_tokens_holds_back_the_end_token(client):
    reply = client.completions.create(model="tiny-neo", prompt="Hi", max_tokens=6, temperature=0,
                                      extra_body={"min_tokens": 6})
    assert reply.usage.completion_tokens == 6


def test_completions_equal_the_workbench_generate(client, served_home):
    from workbench.core.context import open_workspace
    from workbench.core.generation import GenerationSettings, generate
    from workbench.core.models import ModelCache

    ctx = open_workspace(served_home)
    loaded = ModelCache().get(ctx.registry, "tiny-neo")
    expected = generate(loaded, ["Once upon a midnight"], GenerationSettings(max_new_tokens=9))[0].text
    reply = client.completions.create(model="tiny-neo", prompt="Once upon a midnight", max_tokens=9, temperature=0)
    assert reply.choices[0].text == expected
    ctx.registry.close()


def test_concurrent_clients_all_get_their_own_greedy_reply(server, client):
    prompts = ["Alice", "Once upon a midnight dreary, while I pondered", "The Queen said", "Down the rabbit hole"]
    solo = [client.completions.create(model="tiny-neo", prompt=p, max_tokens=8, temperature=0).choices[0].text
            for p in prompts]
    results: dict[int, str] = {}

    def ask(index: int) -> None:
        reply = client.completions.create(model="tiny-neo", prompt=prompts[index % 4], max_tokens=8, temperature=0)
        results[index] = reply.choices[0].text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(8)] == solo * 2
    batches = [int(line.split("batch of ")[1].split()[0]) for line in server.log().splitlines() if "batch of" in line]
    assert max(batches) > 1  # concurrent requests were decoded together


@pytest.mark.parametrize("kwargs, status, param", [
    ({"model": "nope", "messages": MESSAGES}, 404, "model"),
    ({"model": "tiny-chat", "messages": []}, 400, "messages"),
    ({"model": "tiny-chat", "messages": MESSAGES, "temperature": -0.5}, 400, "temperature"),
    ({"model": "tiny-chat", "messages": MESSAGES, "top_p": 1.5}, 400, "top_p"),
    ({"model": "tiny-chat", "messages": MESSAGES, "max_tokens": 100_000}, 400, "max_tokens"),
    ({"model": "tiny-neo", "messages": MESSAGES}, 400, "messages"),  # no chat template
])
def test_bad_requests_get_openai_error_json(client, kwargs, status, param):
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**kwargs)
    assert caught.value.status_code == status
    error = caught.value.body
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert "Traceback" not in error["message"]


def test_one_log_line_per_request(server, client):
    client.models.list()
    client.chat.completions.create(model="tiny-chat", messages=MESSAGES, max_tokens=2)
    log = server.log()
    assert '"GET /v1/models" 200' in log
    assert '"POST /v1/chat/completions" 200 model=tiny-chat' in log


def test_a_client_that_disconnects_stops_its_generation(server, client):
    stream = client.completions.create(model="tiny-neo", prompt="Alice", max_tokens=200, temperature=0,
                                       stream=True, extra_body={"min_tokens": 200})
    for count, _ in enumerate(stream):
        if count == 2:
            break
    stream.close()
    deadline = time.monotonic() + 30
    while "client went away" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = [line for line in server.log().splitlines() if "client went away" in line][-1]
    assert int(line.split(" after ")[1].split()[0]) < 200


def test_api_key_is_required_when_set(served_home):
    process = ServerProcess(served_home, ["tiny-neo"], "--api-key", "sesame")
    try:
        wrong = openai.OpenAI(base_url=process.url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.models.list()
        assert caught.value.body["code"] == "invalid_api_key"
        missing = httpx.get(f"{process.url}/models")  # the openai client always sends a key
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        good = openai.OpenAI(base_url=process.url, api_key="sesame", max_retries=0)
        assert [m.id for m in good.models.list()] == ["tiny-neo"]
        # SIGTERM in the middle of a long generation: the process ends within seconds.
        stream = good.completions.create(model="tiny-neo", prompt="Alice", max_tokens=240, stream=True,
                                         extra_body={"min_tokens": 240})
        next(iter(stream))
        started = time.monotonic()
        assert process.stop(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        process.stop()


def test_binding_beyond_loopback_without_a_key_warns(ctx):
    from workbench.core.errors import WorkbenchError
    from workbench.server.app import is_loopback, serve

    warnings: list[str] = []
    with pytest.raises(WorkbenchError, match="nope"):
        serve(ctx, ["nope"], host="0.0.0.0", port=0, warn=warnings.append)
    assert warnings and "without --api-key" in warnings[0]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
