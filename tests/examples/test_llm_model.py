"""The LLM example's model and engine in-process (examples/llm): the fitted model predicts held-out text better
than its most common character, a cached decode equals a fresh forward pass, and the engine's scheduling
(queue, running slots, KV-cache blocks, cancellation) step by step."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

LLM_DIR = Path(__file__).resolve().parents[2] / "examples" / "llm"


@pytest.fixture(scope="module")
def llm_modules() -> Iterator[tuple[Any, Any]]:
    # The example's modules import each other by their plain names, as `bentoml serve` in their folder does.
    # One BLAS thread, as the service runs it: threads spinning on a busy 2-core machine slowed it 15 times.
    sys.path.insert(0, str(LLM_DIR))
    try:
        import engine
        import tinylm

        with threadpool_limits(1):
            yield tinylm, engine
    finally:
        sys.path.remove(str(LLM_DIR))


@pytest.fixture(scope="module")
def model(llm_modules: tuple[Any, Any]) -> Any:
    tinylm, _ = llm_modules
    return tinylm.build_model(tinylm.ModelConfig(train_chars=20_000, context_tokens=256))


def test_the_fitted_model_predicts_held_out_text(llm_modules: tuple[Any, Any], model: Any) -> None:
    tinylm, _ = llm_modules
    held_out = tinylm.training_text()[-1][:255]  # the last document is past the 20,000 characters fitted on
    tokens = model.tokenizer.encode(held_out)
    most_common_share = np.bincount(tokens).max() / len(tokens)
    accuracy = model.next_token_accuracy(held_out)
    assert accuracy > most_common_share + 0.03, (accuracy, most_common_share)


def test_decoding_with_the_cache_equals_a_fresh_forward_pass(model: Any) -> None:
    tokens = model.tokenizer.encode("def f(x):\n    return x")
    cache = model.new_cache(len(tokens))
    model.prefill(tokens[:5], cache)
    stepped = [model.decode([token], [cache])[0] for token in tokens[5:]]
    whole = model.window_features(tokens)
    assert np.allclose(np.stack(stepped), whole[5:], atol=1e-3)
    # A batch of two sequences at different lengths decodes each as it would alone.
    first, second = model.new_cache(40), model.new_cache(40)
    model.prefill(tokens[:3], first)
    model.prefill(tokens[:9], second)
    batched = model.decode([tokens[3], tokens[9]], [first, second])
    assert np.allclose(batched[0], whole[3], atol=1e-3) and np.allclose(batched[1], whole[9], atol=1e-3)


def test_sampling_temperature_zero_is_the_most_likely_and_eos_can_be_excluded(llm_modules: tuple[Any, Any]) -> None:
    tinylm, _ = llm_modules
    logits = np.log(np.array([0.5, 0.0001, 0.3, 0.1999], dtype=np.float32))
    rng = np.random.default_rng(0)
    assert tinylm.sample(logits, 0.0, 1.0, rng, allow_eos=True) == tinylm.EOS
    assert tinylm.sample(logits, 0.0, 1.0, rng, allow_eos=False) == 2
    drawn = {tinylm.sample(logits, 1.0, 0.5, rng, allow_eos=True) for _ in range(50)}
    assert drawn == {tinylm.EOS}  # top_p 0.5 keeps only the 0.5 token
    assert tinylm.EOS not in {tinylm.sample(logits, 1.0, 1.0, rng, allow_eos=False) for _ in range(200)}


@dataclass
class RecordingMetrics:
    states: list[tuple[int, int, float]] = field(default_factory=list)
    prompt: int = 0
    generated: int = 0
    first_tokens: int = 0

    def state(self, running: int, waiting: int, kv_cache_usage: float) -> None:
        self.states.append((running, waiting, kv_cache_usage))

    def prompt_tokens(self, count: int) -> None:
        self.prompt += count

    def generation_tokens(self, count: int) -> None:
        self.generated += count

    def first_token(self, seconds: float) -> None:
        self.first_tokens += 1


def test_engine_admits_by_slots_and_blocks_and_frees_them(llm_modules: tuple[Any, Any], model: Any) -> None:
    _, engine = llm_modules
    metrics = RecordingMetrics()
    # 512 positions = 32 blocks; each request below needs 10 + 150 = 160 positions = 10 blocks.
    eng = engine.Engine(model, max_running=2, kv_cache_tokens=512, metrics=metrics)

    async def scenario() -> list[list[Any]]:
        request = engine.GenerationRequest([5] * 10, max_tokens=150, temperature=1.0, seed=1, ignore_eos=True)
        streams = [eng.generate(request) for _ in range(4)]
        firsts = [asyncio.ensure_future(anext(stream)) for stream in streams]
        await asyncio.sleep(0)  # every generator registered its sequence
        eng._loop_task.cancel()  # drive the steps by hand from here
        assert (len(eng.running), len(eng.waiting)) == (0, 4)
        eng.step()
        # Two slots: two admitted (20 of 32 blocks), two waiting.
        assert (len(eng.running), len(eng.waiting), eng.used_blocks) == (2, 2, 20)
        for _ in range(149):
            eng.step()
        assert (len(eng.running), len(eng.waiting)) == (0, 2)  # 150 tokens each, then finished
        eng.step()
        assert (len(eng.running), eng.used_blocks) == (2, 20)
        eng.step()
        await asyncio.sleep(0)
        for first in firsts:
            assert (await first).token is not None
        # Leaving a stream early cancels its sequence: the next step frees its slot and blocks.
        await streams[2].aclose()
        eng.step()
        assert (len(eng.running), eng.used_blocks) == (1, 10)
        rest = []
        while eng.running:
            eng.step()
        async for token in streams[3]:
            rest.append(token)
        return [rest]

    (rest,) = asyncio.run(scenario())
    assert [t.finish_reason for t in rest[:-1]] == [None] * (len(rest) - 1) and rest[-1].finish_reason == "length"
    assert len([t for t in rest if t.token is not None]) == 149  # its first token was read above
    assert metrics.prompt == 40 and metrics.first_tokens == 4


def test_engine_refuses_what_the_pool_can_never_hold(llm_modules: tuple[Any, Any], model: Any) -> None:
    _, engine = llm_modules
    with pytest.raises(ValueError, match="one full context"):
        engine.Engine(model, max_running=1, kv_cache_tokens=100)
    eng = engine.Engine(model, max_running=1, kv_cache_tokens=256)

    async def too_big() -> None:
        await anext(eng.generate(engine.GenerationRequest([5] * 200, max_tokens=100)))

    with pytest.raises(engine.EngineFullError, match="KV-cache blocks"):
        asyncio.run(too_big())


def test_sampling_never_generates_unk_which_has_no_text(llm_modules: tuple[Any, Any]) -> None:
    tinylm, _ = llm_modules
    # UNK the most likely by far: still never drawn, at any temperature, with or without EOS.
    logits = np.log(np.array([0.01, 0.97, 0.01, 0.01], dtype=np.float32))
    rng = np.random.default_rng(0)
    assert tinylm.sample(logits, 0.0, 1.0, rng, allow_eos=False) != tinylm.UNK
    drawn = {tinylm.sample(logits, 2.0, 1.0, rng, allow_eos=True) for _ in range(500)}
    assert tinylm.UNK not in drawn and drawn == {tinylm.EOS, 2, 3}
