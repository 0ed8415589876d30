"""What every text LLM reranker shares: the causal LM, its options, save/load of a self-contained folder."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from polyrank.shared.llm.loading import CausalLM
from polyrank.shared.llm.parsers import ParseStats
from polyrank.shared.protocol import Candidate, Reranker
from polyrank.shared.registry import MANIFEST, write_manifest

MODEL_DIR = "model"


def candidate_text(candidate: Candidate, max_words: int | None = None) -> str:
    """A candidate's text (``content`` as a string, or ``title`` + ``text`` of a dict), cut to ``max_words``."""
    content = candidate.content
    if isinstance(content, dict):
        content = f"{content.get('title', '')} {content.get('text', '')}".strip()
    text = " ".join(str(content if content is not None else "").split())
    if max_words is not None:
        text = " ".join(text.split(" ")[:max_words])
    return text


class LLMReranker(Reranker):
    """Base of the text rerankers: ``lm`` plus JSON-serialisable ``options`` recorded by :meth:`save`."""

    def __init__(self, lm: CausalLM, registry_name: str, **options: Any) -> None:
        self.lm = lm
        self.name = registry_name
        self.options = options
        self.stats = ParseStats()
        #: ``(prompts, max_new_tokens, stop_strings) -> texts``; tests inject a fake to feed hand-written outputs
        self.generator: Callable[[list[str], int, Sequence[str]], list[str]] = self._generate

    def _generate(self, prompts: list[str], max_new_tokens: int, stop_strings: Sequence[str] = ()) -> list[str]:
        """Greedy continuations of rendered prompt texts through :func:`polyrank.shared.llm.scoring.generate`."""
        from polyrank.shared.llm.scoring import generate

        return generate(self.lm, [self.lm.encode(p) for p in prompts], max_new_tokens, stop_strings=stop_strings,
                        token_budget=int(self.options.get("token_budget", 16384)))

    def save(self, directory: str | Path) -> Path:
        """Write the model folder and a ``polyrank.json`` (registry name + options) atomically; return the dir."""
        from polyrank.shared.atomic import atomic_directory

        directory = Path(directory)
        with atomic_directory(directory) as staging:
            self.lm.save(staging / MODEL_DIR)
            write_manifest(staging, self.name, options=self.options, source=self.lm.source)
        return directory


def read_saved(directory: str | Path) -> tuple[Path, dict[str, Any]]:
    """The model folder and the recorded options of a directory written by :meth:`LLMReranker.save`."""
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    return directory / MODEL_DIR, dict(manifest.get("options", {}))
