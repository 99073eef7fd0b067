"""A small character-level language model computed on the CPU with numpy, token by token, with a KV cache.

No weights are downloaded: the transformer's weights are drawn from a fixed seed, and its next-character readout
is fitted at start-up (ridge regression, a few seconds) on the help text of Python's own documentation
(`pydoc_data.topics`, shipped with CPython). So every answer comes from a real forward pass: prefill over the
prompt, then one decode step per generated token, attending over the cached keys and values of every earlier
position, as a large model's server does, only smaller.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

EOS = 0
UNK = 1
# Printable ASCII and newline; anything else in a prompt is one UNK token.
ALPHABET = string.printable[:95] + "\n"


@dataclass(frozen=True)
class ModelConfig:
    """The model's shape and how its readout is fitted."""

    d_model: int = 128
    layers: int = 4
    heads: int = 4
    d_ff: int = 512
    # Longest prompt + completion, in tokens (characters).
    context_tokens: int = 1024
    seed: int = 0
    # Characters of training text, cut into windows of `train_window` characters.
    train_chars: int = 40_000
    train_window: int = 128
    ridge: float = 1e-2


class CharTokenizer:
    """Characters to token ids and back: EOS, UNK, then ALPHABET."""

    def __init__(self) -> None:
        self.vocab_size = len(ALPHABET) + 2
        self._ids = {char: index + 2 for index, char in enumerate(ALPHABET)}

    def encode(self, text: str) -> list[int]:
        """One token per character."""
        return [self._ids.get(char, UNK) for char in text]

    def decode_one(self, token: int) -> str:
        """The text of one generated token (EOS and UNK have none)."""
        return ALPHABET[token - 2] if token >= 2 else ""


def training_text() -> list[str]:
    """Documents to fit the readout on: CPython's own help topics, in a fixed order."""
    from pydoc_data.topics import topics

    return [topics[key].strip() for key in sorted(topics)]


def _relu(x: Array) -> Array:
    # GELU's tanh cost 10 times the layer's matrix products in numpy's float32; random features need no smoothness.
    return np.maximum(x, np.float32(0.0))


def _layer_norm(x: Array) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    return np.asarray(centred / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + 1e-5), dtype=np.float32)


def _positions(count: int, d_model: int) -> Array:
    position = np.arange(count, dtype=np.float64)[:, None]
    rate = np.exp(-math.log(10_000.0) * np.arange(0, d_model, 2) / d_model)[None, :]
    table = np.zeros((count, d_model))
    table[:, 0::2], table[:, 1::2] = np.sin(position * rate), np.cos(position * rate)
    return table.astype(np.float32)


@dataclass
class Layer:
    qkv: Array  # (d, 3d)
    out: Array  # (d, d)
    up: Array  # (d, d_ff)
    down: Array  # (d_ff, d)


@dataclass
class KVCache:
    """One sequence's keys and values per layer, (context, d) each, filled up to `length` positions."""

    keys: list[Array]
    values: list[Array]
    length: int = 0


@dataclass
class TinyLM:
    """The model: embeddings and layers drawn from the seed, the readout fitted by `fit`."""

    config: ModelConfig
    tokenizer: CharTokenizer = field(default_factory=CharTokenizer)
    readout: Array | None = None

    def __post_init__(self) -> None:
        c, rng = self.config, np.random.default_rng(self.config.seed)

        def draw(*shape: int) -> Array:
            return (rng.standard_normal(shape) / math.sqrt(shape[0])).astype(np.float32)

        self.embedding = (rng.standard_normal((self.tokenizer.vocab_size, c.d_model))).astype(np.float32)
        self.positions = _positions(c.context_tokens, c.d_model)
        self.layers = [
            Layer(
                draw(c.d_model, 3 * c.d_model),
                draw(c.d_model, c.d_model),
                draw(c.d_model, c.d_ff),
                draw(c.d_ff, c.d_model),
            )
            for _ in range(c.layers)
        ]
        self.head_dim = c.d_model // c.heads

    # ------------------------------------------------------------------ forward passes

    def new_cache(self, tokens: int) -> KVCache:
        """An empty cache with room for `tokens` positions."""
        d = self.config.d_model
        return KVCache(
            keys=[np.zeros((tokens, d), np.float32) for _ in self.layers],
            values=[np.zeros((tokens, d), np.float32) for _ in self.layers],
        )

    def _attend(self, q: Array, keys: Array, values: Array, causal_from: int | None) -> Array:
        """Multi-head attention of queries q (T, d) over keys/values (S, d); causal when `causal_from` is the
        position of q's first row among the keys."""
        t, s, h, dh = q.shape[0], keys.shape[0], self.config.heads, self.head_dim
        qh = q.reshape(t, h, dh).transpose(1, 0, 2)
        kh = keys.reshape(s, h, dh).transpose(1, 2, 0)
        scores = (qh @ kh) / math.sqrt(dh)  # (h, T, S)
        if causal_from is not None and t > 1:
            allowed = np.arange(s)[None, :] <= (causal_from + np.arange(t))[:, None]
            scores = np.where(allowed[None], scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        vh = values.reshape(s, h, dh).transpose(1, 0, 2)
        return np.asarray((scores @ vh).transpose(1, 0, 2).reshape(t, h * dh), dtype=np.float32)

    def _features(self, hidden: list[Array]) -> Array:
        # The readout sees every layer's output, and a constant for its bias.
        ones = np.ones((hidden[0].shape[0], 1), np.float32)
        return np.concatenate([*(_layer_norm(h) for h in hidden), ones], axis=1)

    def prefill(self, tokens: list[int], cache: KVCache) -> Array:
        """Run the prompt through the model, filling `cache`; the features of its last position."""
        start, count = cache.length, len(tokens)
        x = self.embedding[tokens] + self.positions[start : start + count]
        outputs: list[Array] = []
        for index, layer in enumerate(self.layers):
            q, k, v = np.split(_layer_norm(x) @ layer.qkv, 3, axis=1)
            cache.keys[index][start : start + count] = k
            cache.values[index][start : start + count] = v
            end = start + count
            x = x + self._attend(q, cache.keys[index][:end], cache.values[index][:end], start) @ layer.out
            x = x + _relu(_layer_norm(x) @ layer.up) @ layer.down
            outputs.append(x)
        cache.length += count
        return self._features([o[-1:] for o in outputs])

    def decode(self, tokens: list[int], caches: list[KVCache]) -> Array:
        """One step for a batch of sequences: each one's next input token at its cache's length; their features
        (batch, features). The projections run batched, attention per sequence over its own cache."""
        lengths = [cache.length for cache in caches]
        x = self.embedding[tokens] + self.positions[lengths]
        outputs: list[Array] = []
        for index, layer in enumerate(self.layers):
            q, k, v = np.split(_layer_norm(x) @ layer.qkv, 3, axis=1)
            attended = np.empty_like(q)
            for row, cache in enumerate(caches):
                position = lengths[row]
                cache.keys[index][position] = k[row]
                cache.values[index][position] = v[row]
                keys, values = cache.keys[index][: position + 1], cache.values[index][: position + 1]
                attended[row] = self._attend(q[row : row + 1], keys, values, None)[0]
            x = x + attended @ layer.out
            x = x + _relu(_layer_norm(x) @ layer.up) @ layer.down
            outputs.append(x)
        for cache in caches:
            cache.length += 1
        return self._features(outputs)

    def logits(self, features: Array) -> Array:
        """Next-token log-scores (batch, vocab) from features; the readout predicts probabilities (a linear
        probability model), floored before the logarithm."""
        assert self.readout is not None, "fit() the readout first"
        probabilities = features @ self.readout
        return np.log(np.clip(probabilities, 1e-4, None)).astype(np.float32)

    # ------------------------------------------------------------------ the readout

    def window_features(self, tokens: list[int]) -> Array:
        """Features at every position of one window of tokens (a fresh cache)."""
        count = len(tokens)
        x = self.embedding[tokens] + self.positions[:count]
        outputs: list[Array] = []
        for layer in self.layers:
            q, k, v = np.split(_layer_norm(x) @ layer.qkv, 3, axis=1)
            x = x + self._attend(q, k, v, 0) @ layer.out
            x = x + _relu(_layer_norm(x) @ layer.up) @ layer.down
            outputs.append(x)
        return self._features(outputs)

    def training_windows(self) -> list[list[int]]:
        """The training text as windows of token ids, each document followed by EOS."""
        c = self.config
        stream: list[int] = []
        for document in training_text():
            stream.extend([*self.tokenizer.encode(document), EOS])
            if len(stream) >= c.train_chars + 1:
                break
        stream = stream[: c.train_chars + 1]
        return [stream[i : i + c.train_window + 1] for i in range(0, len(stream) - 1, c.train_window)]

    def fit(self) -> None:
        """Fit the readout: ridge regression of the next token's one-hot on the features of each position."""
        vocab = self.tokenizer.vocab_size
        gram: npt.NDArray[np.float64] | None = None
        cross: npt.NDArray[np.float64] | None = None
        for window in self.training_windows():
            if len(window) < 2:
                continue
            features = self.window_features(window[:-1]).astype(np.float64)
            targets = np.zeros((len(window) - 1, vocab))
            targets[np.arange(len(window) - 1), window[1:]] = 1.0
            gram = features.T @ features if gram is None else gram + features.T @ features
            cross = features.T @ targets if cross is None else cross + features.T @ targets
        assert gram is not None and cross is not None
        regularised = gram + self.config.ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
        self.readout = np.linalg.solve(regularised, cross).astype(np.float32)

    def next_token_accuracy(self, text: str) -> float:
        """Share of positions of `text` whose most likely next token is the actual one."""
        tokens = self.tokenizer.encode(text)[: self.config.context_tokens]
        predicted = self.logits(self.window_features(tokens[:-1])).argmax(axis=1)
        return float(np.mean(predicted == np.asarray(tokens[1:])))


def sample(logits: Array, temperature: float, top_p: float, rng: np.random.Generator, allow_eos: bool) -> int:
    """One token from a row of log-scores: the most likely at temperature 0, else drawn at that temperature from
    the smallest set of most likely tokens whose probabilities reach top_p (nucleus sampling). Never UNK: it
    stands for a prompt's unknown characters and has no text, so a generated one would be a token nobody sees."""
    scores = logits.astype(np.float64)
    scores[UNK] = -np.inf
    if not allow_eos:
        scores[EOS] = -np.inf
    if temperature <= 0:
        return int(scores.argmax())
    weights = np.exp((scores - scores.max()) / temperature)
    weights /= weights.sum()
    if top_p < 1.0:
        order = np.argsort(-weights)
        keep = order[: int(np.searchsorted(np.cumsum(weights[order]), top_p)) + 1]
        kept = np.zeros_like(weights)
        kept[keep] = weights[keep]
        weights = kept / kept.sum()
    return int(rng.choice(len(weights), p=weights))


def build_model(config: ModelConfig | None = None) -> TinyLM:
    """The model with its readout fitted."""
    model = TinyLM(config or ModelConfig())
    model.fit()
    return model


def describe(model: TinyLM) -> dict[str, Any]:
    """The model's shape, for the service's /v1/models answer."""
    c = model.config
    parameters = sum(a.size for layer in model.layers for a in (layer.qkv, layer.out, layer.up, layer.down))
    parameters += model.embedding.size + (0 if model.readout is None else model.readout.size)
    return {"layers": c.layers, "d_model": c.d_model, "context_tokens": c.context_tokens, "parameters": int(parameters)}
