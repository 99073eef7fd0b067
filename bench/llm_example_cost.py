"""The LLM example's own cost per token, in-process on one thread (`python -m bench.llm_example_cost`; pin it to a
core with `taskset -c N`): the start-up fit, prefill of a prompt, and decode steps of 1..32 sequences together,
as CPU time per token and tokens per second of CPU. The machine's other load stretches wall time, not CPU time."""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the service runs it (examples/llm/service.py)

LLM_DIR = Path(__file__).resolve().parents[1] / "examples" / "llm"
STEPS = 100
PROMPT = "The for statement is used to iterate over the elements of a sequence "


def main() -> None:
    # The example's modules import each other by their plain names, as `bentoml serve` in their folder does.
    sys.path.insert(0, str(LLM_DIR))
    tinylm: Any = importlib.import_module("tinylm")

    started = time.process_time()
    model = tinylm.build_model()
    print(f"fit at start-up: {time.process_time() - started:.2f} s CPU; {tinylm.describe(model)}")
    prompt = model.tokenizer.encode(PROMPT * 4)
    started = time.process_time()
    for _ in range(10):
        model.prefill(prompt, model.new_cache(len(prompt) + 1))
    prefill_s = (time.process_time() - started) / 10
    print(f"prefill of {len(prompt)} tokens: {prefill_s * 1000:.1f} ms CPU ({len(prompt) / prefill_s:.0f} tokens/s)")
    for batch in (1, 4, 16, 32):
        caches = [model.new_cache(len(prompt) + STEPS + 1) for _ in range(batch)]
        for cache in caches:
            model.prefill(prompt, cache)
        started = time.process_time()
        for _ in range(STEPS):
            model.logits(model.decode([5] * batch, caches))
        step_s = (time.process_time() - started) / STEPS
        print(
            f"decode, {batch:>2} sequences: {step_s * 1000:6.2f} ms CPU per step, "
            f"{step_s / batch * 1000:5.2f} ms per token, {batch / step_s:6.0f} tokens/s"
        )


if __name__ == "__main__":
    main()
