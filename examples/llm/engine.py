"""A continuous-batching generation engine over `tinylm`, scheduled as vLLM's is in spirit: requests wait in a
FIFO queue until a running slot and their KV-cache blocks are free, are prefilled when admitted (which yields
their first token), and then every step decodes one more token for every running sequence together.

The KV-cache pool is counted in blocks of BLOCK_TOKENS positions; a sequence reserves blocks for its prompt and
its whole completion when admitted, so no running sequence is ever preempted. What the engine does is reported
to a `MetricsSink` (queue length, running sequences, the pool's usage, tokens, time to first token), which the
service exports on /metrics.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tinylm import EOS, KVCache, TinyLM, sample

BLOCK_TOKENS = 16


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: prompt token ids and the sampling parameters."""

    prompt: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    # Keep generating until max_tokens: the end-of-text token is never drawn.
    ignore_eos: bool = False


@dataclass(frozen=True)
class Token:
    """One generated token, or the end of a generation (`finish_reason` "length" or "stop", token None)."""

    token: int | None
    finish_reason: str | None = None


class MetricsSink(Protocol):
    def state(self, running: int, waiting: int, kv_cache_usage: float) -> None: ...

    def prompt_tokens(self, count: int) -> None: ...

    def generation_tokens(self, count: int) -> None: ...

    def first_token(self, seconds: float) -> None: ...


class NoMetrics:
    """A sink that drops everything (tests, the model alone)."""

    def state(self, running: int, waiting: int, kv_cache_usage: float) -> None:
        pass

    def prompt_tokens(self, count: int) -> None:
        pass

    def generation_tokens(self, count: int) -> None:
        pass

    def first_token(self, seconds: float) -> None:
        pass


@dataclass(eq=False)
class _Sequence:
    request: GenerationRequest
    queued_at_s: float
    output: asyncio.Queue[Token | BaseException] = field(default_factory=asyncio.Queue)
    cache: KVCache | None = None
    rng: np.random.Generator | None = None
    blocks: int = 0
    generated: int = 0
    next_token: int | None = None
    cancelled: bool = False


class EngineFullError(Exception):
    """A request that could never be admitted: it needs more KV-cache blocks than the pool holds."""


class Engine:
    """Runs generations on one model; `generate` is called from the server's event loop."""

    def __init__(
        self, model: TinyLM, max_running: int, kv_cache_tokens: int, metrics: MetricsSink | None = None
    ) -> None:
        if max_running < 1:
            raise ValueError(f"max_running={max_running} must be >= 1")
        self.model = model
        self.max_running = max_running
        self.total_blocks = kv_cache_tokens // BLOCK_TOKENS
        if self.total_blocks * BLOCK_TOKENS < model.config.context_tokens:
            raise ValueError(
                f"kv_cache_tokens={kv_cache_tokens} must hold at least one full context "
                f"({model.config.context_tokens} tokens)"
            )
        self.metrics: MetricsSink = metrics or NoMetrics()
        self.waiting: deque[_Sequence] = deque()
        self.running: list[_Sequence] = []
        self.used_blocks = 0
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self.steps = 0

    def blocks_for(self, request: GenerationRequest) -> int:
        return math.ceil((len(request.prompt) + request.max_tokens) / BLOCK_TOKENS)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Token]:
        """The tokens of one generation as they are produced; the last one carries the finish reason.
        Leaving the iteration early (a client gone) frees the sequence's slot and blocks at the next step."""
        if self.blocks_for(request) > self.total_blocks:
            needed = self.blocks_for(request)
            raise EngineFullError(f"needs {needed} KV-cache blocks, the pool holds {self.total_blocks}")
        sequence = _Sequence(request, queued_at_s=time.monotonic())
        self.waiting.append(sequence)
        self._report()
        self._ensure_loop()
        self._wake.set()
        try:
            while True:
                item = await sequence.output.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            sequence.cancelled = True

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    def _report(self) -> None:
        self.metrics.state(len(self.running), len(self.waiting), self.used_blocks / self.total_blocks)

    async def _run(self) -> None:
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                self.step()
            except Exception as error:  # a bug must reach every caller, not hang them
                for sequence in [*self.running, *self.waiting]:
                    sequence.output.put_nowait(error)
                self.running.clear()
                self.waiting.clear()
                self.used_blocks = 0
            self._report()
            # Let the server write the tokens of this step before computing the next.
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ one scheduling step (synchronous)

    def step(self) -> None:
        """Drop cancelled sequences, admit and prefill what fits, then decode one token for the others."""
        for sequence in [s for s in self.running if s.cancelled]:
            self._finish(sequence)
        self.waiting = deque(s for s in self.waiting if not s.cancelled)
        admitted: list[_Sequence] = []
        while self.waiting and len(self.running) < self.max_running:
            head = self.waiting[0]
            needed = self.blocks_for(head.request)
            if self.used_blocks + needed > self.total_blocks:
                break
            self.waiting.popleft()
            head.blocks, self.used_blocks = needed, self.used_blocks + needed
            self.running.append(head)
            admitted.append(head)
        decoding = [s for s in self.running if s not in admitted]
        for sequence in admitted:
            self._prefill(sequence)
        if decoding:
            self._decode(decoding)
        self.steps += 1

    def _prefill(self, sequence: _Sequence) -> None:
        request = sequence.request
        sequence.cache = self.model.new_cache(len(request.prompt) + request.max_tokens)
        sequence.rng = np.random.default_rng(request.seed)
        features = self.model.prefill(request.prompt, sequence.cache)
        self.metrics.prompt_tokens(len(request.prompt))
        self._emit(sequence, self.model.logits(features)[0])
        self.metrics.first_token(time.monotonic() - sequence.queued_at_s)

    def _decode(self, sequences: list[_Sequence]) -> None:
        tokens = [s.next_token for s in sequences]
        caches = [s.cache for s in sequences]
        assert all(t is not None for t in tokens) and all(c is not None for c in caches)
        logits = self.model.logits(self.model.decode(tokens, caches))  # type: ignore[arg-type]
        for row, sequence in enumerate(sequences):
            self._emit(sequence, logits[row])

    def _emit(self, sequence: _Sequence, logits: np.ndarray) -> None:  # type: ignore[type-arg]
        request = sequence.request
        assert sequence.rng is not None
        token = sample(logits, request.temperature, request.top_p, sequence.rng, allow_eos=not request.ignore_eos)
        self.metrics.generation_tokens(1)
        if token == EOS:
            sequence.output.put_nowait(Token(None, "stop"))
            self._finish(sequence)
            return
        sequence.generated += 1
        sequence.next_token = token
        sequence.output.put_nowait(Token(token))
        if sequence.generated >= request.max_tokens:
            sequence.output.put_nowait(Token(None, "length"))
            self._finish(sequence)

    def _finish(self, sequence: _Sequence) -> None:
        if sequence in self.running:
            self.running.remove(sequence)
            self.used_blocks -= sequence.blocks
        sequence.cache = None
