"""Example tabular model service for the harness: a gradient boosting wine classifier from the BentoML model store.

The model is trained by `train.py` and saved to the model store; the service loads it with
`bentoml.models.BentoModel`, so `bentoml build` packs it into the bento.
"""

from __future__ import annotations

from typing import Annotated, Any

import bentoml
from pydantic import BaseModel, Field

FEATURES = 13
MAX_ROWS_PER_REQUEST = 256

# Strict floats: strings, booleans and null are type errors, and NaN or infinity are refused.
Feature = Annotated[float, Field(allow_inf_nan=False, strict=True)]
Row = Annotated[list[Feature], Field(min_length=FEATURES, max_length=FEATURES)]
Rows = Annotated[
    list[Row],
    Field(
        min_length=1, max_length=MAX_ROWS_PER_REQUEST, description="rows of the 13 wine features, in load_wine order"
    ),
]


class WinePrediction(BaseModel):
    """Response body of /predict: one cultivar label (0, 1 or 2) per row, in request order."""

    labels: list[int]


@bentoml.service(traffic={"timeout": 30, "concurrency": 32}, logging={"access": {"enabled": False}})
class WineClassifier:
    """Predicts the cultivar of a wine from its 13 chemical measurements."""

    model_ref = bentoml.models.BentoModel("wine-gbc:latest")

    def __init__(self) -> None:
        import joblib

        self.model: Any = joblib.load(self.model_ref.path_of("model.joblib"))

    # bentoml ships no type information (mypy sees Any), hence the ignore.
    @bentoml.api  # type: ignore[untyped-decorator]
    def predict(self, rows: Rows) -> WinePrediction:
        """The predicted cultivar of each row."""
        return WinePrediction(labels=[int(label) for label in self.model.predict(rows)])
