"""Train the wine example's model and save it to the BentoML model store, as BentoML's documentation teaches.

A gradient boosting classifier on scikit-learn's bundled wine data set (178 rows, 13 features, 3 cultivars);
every 5th row is held out of training so clients can check answers on rows the model never saw; they are
written to held_out.jsonl next to this file (one request body per row). The store is the one
of BENTOML_HOME (default ~/bentoml). Run: `python train.py` (or `make wine-model`).
"""

from __future__ import annotations

import json
from pathlib import Path

import bentoml
import joblib
import numpy as np
from sklearn.datasets import load_wine
from sklearn.ensemble import GradientBoostingClassifier

MODEL_NAME = "wine-gbc"
MODEL_FILE = "model.joblib"
HELD_OUT_EVERY = 5
SEED = 0


def main() -> None:
    features, labels = load_wine(return_X_y=True)
    train = np.arange(len(features)) % HELD_OUT_EVERY != 0
    model = GradientBoostingClassifier(n_estimators=50, max_depth=2, random_state=SEED)
    model.fit(features[train], labels[train])
    held_out_accuracy = float(model.score(features[~train], labels[~train]))
    with bentoml.models.create(
        name=MODEL_NAME,
        labels={"owner": "harness", "data": "sklearn-wine"},
        metadata={"held_out_accuracy": round(held_out_accuracy, 4), "held_out_every": HELD_OUT_EVERY},
    ) as model_ref:
        joblib.dump(model, model_ref.path_of(MODEL_FILE))
    held_out = Path(__file__).resolve().parent / "held_out.jsonl"
    held_out.write_text("".join(json.dumps({"rows": [row.tolist()]}) + "\n" for row in features[~train]))
    print(f"saved {model_ref.tag} (held-out accuracy {held_out_accuracy:.3f})")


if __name__ == "__main__":
    main()
