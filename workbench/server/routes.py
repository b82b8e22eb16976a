"""The OpenAI endpoints: /v1/models, /v1/chat/completions, /v1/completions (streamed as server-sent events).

Handlers prepare the prompt in a worker thread (the first request loads the model), queue the sequences on
the model's scheduler, then relay the events it sends back. A client that goes away cancels its sequences.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..core.errors import WorkbenchError
from .api_errors import APIError, error_body
from .batching import SamplingParams
from .engine import Engine, RequestError, ServedModel
from .schemas import ChatCompletionRequest, CompletionRequest

POLL_SECONDS = 0.25


@dataclass
class Choice:
    text: str = ""
    finish_reason: str | None = None
    tokens: int = 0


@dataclass
class Relay:
    """Events of one request's sequences, handed from the model's thread to the event loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emitter(self, offset: int):
        def emit(seq, delta: str, finish: str | None) -> None:
            event = (offset + seq.index, delta, finish, len(seq.out_ids))
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        return emit


def _served(engine: Engine, name: str) -> ServedModel:
    served = engine.get(name)
    if served is None:
        raise APIError(404, f"The model `{name}` does not exist (served: {', '.join(engine.models)})",
                       "model", "model_not_found")
    return served


async def _prepare(engine: Engine, call, *args):
    try:
        return await asyncio.get_running_loop().run_in_executor(engine.executor, call, *args)
    except RequestError as error:
        raise APIError(400, error.message, error.param) from None
    except WorkbenchError as error:
        raise APIError(500, str(error)) from None


def _params(body, seed_offset: int = 0) -> SamplingParams:
    seed = None if body.seed is None else body.seed + seed_offset
    return SamplingParams(max_tokens=0, temperature=body.temperature, top_p=body.top_p, seed=seed,
                          stop=body.stops(), min_tokens=body.min_tokens)


def _finish_error(finish: str | None) -> APIError | None:
    if finish == "cancelled":
        return APIError(503, "the server is shutting down; the request was not completed")
    if finish and finish.startswith("error"):
        return APIError(500, f"generation failed ({finish[7:]})")
    return None


def _usage(prompt_tokens: int, choices: list[Choice]) -> dict:
    completion = sum(c.tokens for c in choices)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}


async def _collect(relay: Relay, count: int, request: Request) -> list[Choice]:
    """Every choice's full text; cancels the sequences when the client disconnects."""
    choices = [Choice() for _ in range(count)]
    done = 0
    while done < count:
        try:
            index, delta, finish, tokens = await asyncio.wait_for(relay.queue.get(), POLL_SECONDS)
        except TimeoutError:
            if await request.is_disconnected():
                relay.cancelled.set()
                raise APIError(499, "client disconnected") from None
            continue
        choice = choices[index]
        choice.text += delta
        choice.tokens = tokens
        if finish is not None:
            if (error := _finish_error(finish)) is not None:
                relay.cancelled.set()
                raise error
            choice.finish_reason = finish
            done += 1
    return choices


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def _stream_events(relay: Relay, count: int, chunk, usage_chunk) -> AsyncIterator[str]:
    """SSE lines: chunk(index, delta, finish) per event, then the usage chunk when asked, then [DONE]."""
    choices = [Choice() for _ in range(count)]
    done = 0
    try:
        while done < count:
            index, delta, finish, tokens = await relay.queue.get()
            choices[index].tokens = tokens
            if (error := _finish_error(finish)) is not None:
                yield _sse(error_body(error.status, error.message))
                break
            if delta or finish:
                yield _sse(chunk(index, delta, finish))
            done += finish is not None
        else:
            if usage_chunk is not None:
                yield _sse(usage_chunk(choices))
        yield _sse("[DONE]")
    finally:
        relay.cancelled.set()  # a disconnect cancels this generator: stop the sequences too


def _note(request: Request, model: str, prompt_tokens: int) -> None:
    request.state.model = model
    request.state.prompt_tokens = prompt_tokens


def build_router(engine: Engine) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/models")
    async def list_models():
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": m.created, "owned_by": "workbench"}
            for name, m in engine.models.items()]}

    @router.get("/models/{name}")
    async def get_model(name: str):
        served = _served(engine, name)
        return {"id": name, "object": "model", "created": served.created, "owned_by": "workbench"}

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        served = _served(engine, body.model)
        prepared = await _prepare(engine, served.prepare_chat, body.plain_messages(), body.token_limit())
        _note(request, body.model, len(prepared.prompt_ids))
        relay = Relay(asyncio.get_running_loop())
        served.submit(prepared, _params(body), body.n, relay.emitter(0), relay.cancelled)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": ident, "created": created, "model": body.model}
        if body.stream:
            def chunk(index, delta, finish):
                return {**head, "object": "chat.completion.chunk", "choices": [
                    {"index": index, "delta": {"role": "assistant", "content": delta} if delta else {},
                     "logprobs": None, "finish_reason": finish}]}

            def usage_chunk(choices):
                return {**head, "object": "chat.completion.chunk", "choices": [],
                        "usage": _usage(len(prepared.prompt_ids), choices)}

            events = _stream_events(relay, body.n, chunk, usage_chunk if body.include_usage() else None)
            return StreamingResponse(events, media_type="text/event-stream")
        choices = await _collect(relay, body.n, request)
        request.state.completion_tokens = sum(c.tokens for c in choices)
        return {**head, "object": "chat.completion", "choices": [
            {"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
             "finish_reason": c.finish_reason} for i, c in enumerate(choices)],
            "usage": _usage(len(prepared.prompt_ids), choices)}

    @router.post("/completions")
    async def completions(body: CompletionRequest, request: Request):
        served = _served(engine, body.model)
        prompts = body.prompts()
        prepared = [await _prepare(engine, served.prepare_completion, p, body.max_tokens) for p in prompts]
        prompt_tokens = sum(len(p.prompt_ids) for p in prepared)
        _note(request, body.model, prompt_tokens)
        relay = Relay(asyncio.get_running_loop())
        for number, item in enumerate(prepared):
            served.submit(item, _params(body, number * body.n), body.n, relay.emitter(number * body.n),
                          relay.cancelled)
        count = body.n * len(prompts)
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": ident, "object": "text_completion", "created": created, "model": body.model}
        if body.stream:
            def chunk(index, delta, finish):
                return {**head, "choices": [{"index": index, "text": delta, "logprobs": None,
                                             "finish_reason": finish}]}

            def usage_chunk(choices):
                return {**head, "choices": [], "usage": _usage(prompt_tokens, choices)}

            events = _stream_events(relay, count, chunk, usage_chunk if body.include_usage() else None)
            return StreamingResponse(events, media_type="text/event-stream")
        choices = await _collect(relay, count, request)
        request.state.completion_tokens = sum(c.tokens for c in choices)
        return {**head, "choices": [
            {"index": i, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)], "usage": _usage(prompt_tokens, choices)}

    return router
