"""Saves a Hugging Face tokenizer directory for `make bench-llm`, built locally with the `tokenizers` library (no
model hub is reachable here): one token per whitespace-separated word, the bench server's words `w0`..`wN` in its
vocabulary and everything else `[UNK]`, so the peers count tokens exactly as the server does.

Run with a Python that has `tokenizers` (the peers' environments): python bench/llm_tokenizer.py DIR [WORDS]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def save_tokenizer(directory: Path, words: int) -> Path:
    """Write tokenizer.json and tokenizer_config.json into `directory` (created), loadable by AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # type: ignore[import-not-found]

    vocabulary = {"[UNK]": 0, "[EOS]": 1, **{f"w{i}": i + 2 for i in range(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    # [UNK] is not declared a special token: GuideLLM decodes its synthetic prompts with skip_special_tokens, and
    # every word of its generated text is unknown here, so a special [UNK] left every prompt empty.
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1_000_000}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


if __name__ == "__main__":
    save_tokenizer(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
