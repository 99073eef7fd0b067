"""BentoML's own ceiling for bench/example_ceiling.py: an endpoint that takes the digits example's request
body and does nothing with it, under the same service settings as examples/digits."""

from __future__ import annotations

import bentoml
from pydantic import BaseModel


class Labels(BaseModel):
    """One constant label per image."""

    labels: list[int]


@bentoml.service(traffic={"timeout": 10, "concurrency": 32}, logging={"access": {"enabled": False}})
class Noop:
    """Parses the request (a list of 64-pixel images) and answers without any work."""

    # Async, so no request waits for a thread-pool hand-off: the cheapest endpoint BentoML serves. bentoml
    # ships no type information (mypy sees Any), hence the ignore.
    @bentoml.api  # type: ignore[untyped-decorator]
    async def classify(self, images: list[list[float]]) -> Labels:
        """Answer label 0 for every image."""
        return Labels(labels=[0] * len(images))
