"""Texts that people or models read, loaded from the ``prompts`` package.

Each text lives in ``prompts/<language>/<name>.txt`` (``de`` and ``en``);
English is the fallback when a language lacks a text. Loading is lazy and
cached per library instance, and a missing text is a clear error naming the
file, not a silent empty string.
"""

from __future__ import annotations

from pathlib import Path

import prompts as _prompts_package
from index.errors import CasebotError

DEFAULT_DIR = Path(_prompts_package.__file__).resolve().parent


class PromptLibrary:
    """Reads prompt and reply texts from a folder (default: the bundled ones)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = directory or DEFAULT_DIR
        self._cache: dict[tuple[str, str], str] = {}

    def text(self, language: str, name: str) -> str:
        """The text ``name`` in ``language``, falling back to English."""
        key = (language, name)
        if key not in self._cache:
            for lang in (language, "en"):
                path = self._dir / lang / f"{name}.txt"
                if path.is_file():
                    self._cache[key] = path.read_text(encoding="utf-8").rstrip("\n")
                    break
            else:
                raise CasebotError(f"Missing text {name!r}: expected {self._dir / language / (name + '.txt')}")
        return self._cache[key]

    def offtopic_reference(self, language: str) -> list[str]:
        """Requests the bot must decline, in one language (``#`` starts a comment)."""
        text = self.text(language, "offtopic_reference")
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
