"""One scheduler thread per served model: requests queue up, and whatever is waiting decodes as one batch.

A model loads on its first request and stays loaded. The thread takes the first waiting request, gathers
whatever else arrives within a few milliseconds (concurrent clients land together), and decodes them
step-synchronously (server.batching). Requests that arrive meanwhile wait for the next batch; none is
dropped. Stopping the engine aborts the batch in flight after its current token.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..core.errors import WorkbenchError
from .batching import BatchDecoder, SamplingParams, Sequence

GATHER_SECONDS = 0.02      # wait this long after the latest arrival for another one
GATHER_MAX_SECONDS = 0.1   # but never longer than this before decoding
MAX_BATCH_ROWS = 32
log = logging.getLogger("workbench.server")


class RequestError(Exception):
    """A request the model cannot take (HTTP 400), with the parameter at fault."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message, self.param = message, param


@dataclass
class Prepared:
    prompt_ids: list[int]
    max_tokens: int


class ServedModel:
    """A registered model behind the API: lazy load, prompt preparation, its batch queue and thread."""

    def __init__(self, ctx, name: str, device: str | None = None, dtype: str | None = None):
        self.ctx, self.name, self.device, self.dtype = ctx, name, device, dtype
        self.created = int(time.time())
        self._loaded = None
        self._decoder: BatchDecoder | None = None
        self._load_lock = threading.Lock()
        self._queue: queue.Queue[list[Sequence]] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"serve-{name}")
        self._thread.start()

    # ------------------------------------------------------------ loading and prompts

    def loaded(self):
        """The loaded model (loads on first use; later calls return the same one)."""
        with self._load_lock:
            if self._loaded is None:
                from ..core.models import ModelCache

                registry = self.ctx.registry
                started = time.monotonic()
                self._loaded = ModelCache(max_models=1).get(registry, self.name, self.device, self.dtype)
                # The end tokens chat uses: generation_config's eos ids (a base's, under an adapter) and EOS.
                ends = set(self._loaded.chat_format.end_ids)
                self._decoder = BatchDecoder(self._loaded.model, self._loaded.tokenizer, self._loaded.device, ends)
                log.info("loaded %s on %s in %.1fs", self.name, self._loaded.device, time.monotonic() - started)
            return self._loaded

    def prepare_chat(self, messages: list[dict], max_tokens: int | None) -> Prepared:
        from ..core import templates

        loaded = self.loaded()
        fmt = loaded.chat_format
        if not fmt.is_chat:
            raise RequestError(f"model '{self.name}' has no chat template; use /v1/completions with a prompt",
                               "messages")
        # The same text and tokens as chat, dialogue and evaluation give this model (core/templates.py).
        try:
            text = templates.render(loaded.tokenizer, messages, fmt.template, add_generation_prompt=True)
        except WorkbenchError as error:  # an unknown role, a template that refuses the role order
            raise RequestError(str(error), "messages") from None
        return self._fit(templates.encode(loaded.tokenizer, text), max_tokens)

    def prepare_completion(self, prompt: str, max_tokens: int | None) -> Prepared:
        from ..core.generation import encode_prompt

        loaded = self.loaded()
        ids, _ = encode_prompt(loaded, prompt, budget=10**9)
        return self._fit(ids, max_tokens)

    def _fit(self, ids: list[int], max_tokens: int | None) -> Prepared:
        context = self.loaded().context_length
        room = context - len(ids)
        if room < 1:
            raise RequestError(f"the prompt is {len(ids)} tokens; '{self.name}' has a context of {context} "
                               "tokens", "messages")
        if max_tokens is None:
            return Prepared(ids, room)
        if max_tokens > room:
            raise RequestError(f"max_tokens ({max_tokens}) plus the prompt ({len(ids)} tokens) exceeds the "
                               f"context of '{self.name}' ({context} tokens)", "max_tokens")
        return Prepared(ids, max_tokens)

    # ------------------------------------------------------------ scheduling

    def submit(self, prepared: Prepared, params: SamplingParams, n: int, emit, cancelled: threading.Event) -> None:
        """Queue n sequences of one request; emit(seq, delta, finish_reason) is called from this model's thread."""
        params.max_tokens = prepared.max_tokens
        seqs = [Sequence(prepared.prompt_ids, params, index=i, emit=emit, cancelled=cancelled) for i in range(n)]
        if self._stopping.is_set():
            for seq in seqs:
                seq.emit(seq, "", "cancelled")
            return
        self._queue.put(seqs)

    def stop(self) -> None:
        self._stopping.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                batch = list(self._queue.get(timeout=0.2))
            except queue.Empty:
                continue
            # Concurrent requests arrive a few ms apart: keep gathering while they keep coming (briefly).
            latest = time.monotonic() + GATHER_MAX_SECONDS
            deadline = time.monotonic() + GATHER_SECONDS
            while len(batch) < MAX_BATCH_ROWS:
                try:
                    batch.extend(self._queue.get(timeout=max(0.0, min(deadline, latest) - time.monotonic())))
                except queue.Empty:
                    break
                deadline = time.monotonic() + GATHER_SECONDS
            log.info("decoding a batch of %d sequences on %s", len(batch), self.name)
            try:
                self._decoder.run(batch, should_abort=self._stopping.is_set)
            except Exception as error:  # noqa: BLE001 - reported to every request of the batch
                log.exception("generation failed on %s", self.name)
                for seq in batch:
                    if seq.finish_reason is None:
                        seq.finish_reason = "error"
                        seq.emit(seq, "", f"error: {error}")
        while True:  # answer whatever is still queued
            try:
                for seq in self._queue.get_nowait():
                    seq.finish_reason = "cancelled"
                    seq.emit(seq, "", "cancelled")
            except queue.Empty:
                return


class Engine:
    """The served models by name."""

    def __init__(self, ctx, names: list[str], device: str | None = None, dtype: str | None = None):
        for name in names:
            ctx.registry.get_model(name)  # an unknown name fails here, before the port opens
        self.models = {name: ServedModel(ctx, name, device, dtype) for name in dict.fromkeys(names)}
        # Prompt preparation (and the first load) runs here, off the event loop. Not anyio's pool: its idle
        # workers keep a stopped server alive for 10 s.
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="serve-prepare")

    def get(self, name: str) -> ServedModel | None:
        return self.models.get(name)

    def stop(self) -> None:
        for model in self.models.values():
            model.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
