"""MTM as a :class:`~polyrank.shared.protocol.Reranker`: a claim against candidate articles (sentence lists).

``explain`` returns each article's key sentences with their selection weights and pattern slots, which
is MTM's evidence for a ranking. ``save``/``load`` write safetensors + JSON (never pickle).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyrank.domains.mtm.encoding import load_tokenizer, resolve_backbone, tokenize
from polyrank.domains.mtm.model import MTM
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate, Reranker

logger = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_CONFIG_KEYS = ("n_key_sentences", "n_patterns", "lambda_q", "lambda_p", "n_mlp_layers", "dropout",
                "max_length", "claim_max_length")


def as_sentences(content: Any, candidate_id: str) -> list[str]:
    """An article as non-empty sentences: a list of strings, or one string split at sentence ends."""
    if isinstance(content, Mapping):
        content = content.get("sentences", content.get("content"))
    if isinstance(content, str):
        content = _SENTENCE_END.split(content)
    if not isinstance(content, Sequence) or not all(isinstance(s, str) for s in content):
        raise PolyrankError(f"article {candidate_id!r}: expected a list of sentences (or a string), "
                            f"got {type(content).__name__}")
    sentences = [s.strip() for s in content if s.strip()]
    if not sentences:
        raise PolyrankError(f"article {candidate_id!r} is empty: it needs at least one non-blank sentence")
    return sentences


class MTMReranker(Reranker):
    """Scores articles for a claim with a trained :class:`MTM` (class-1 output of the matcher)."""

    name = "mtm"

    def __init__(self, model: MTM, tokenizer: Any, backbone: str = "tiny", device: str | None = None,
                 batch_size: int = 64) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer, self.backbone, self.batch_size = tokenizer, backbone, batch_size

    def _prepare(self, query: str, candidates: Sequence[Candidate]):
        if not isinstance(query, str):
            raise PolyrankError(f"an MTM query is the claim text (str), got {type(query).__name__}")
        claim = tokenize(self.tokenizer, [query])[0]
        if not claim:
            raise PolyrankError(f"claim {query!r} has no tokens after tokenisation; give a non-empty claim text")
        sentences = [as_sentences(c.content, c.id) for c in candidates]
        flat = tokenize(self.tokenizer, [s for sents in sentences for s in sents])   # one tokenizer call
        bounds = np.cumsum([0] + [len(s) for s in sentences])
        return claim, sentences, [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def _run(self, query: str, candidates: Sequence[Candidate]):
        claim, sentences, articles = self._prepare(query, candidates)
        scores, keys = [], []
        for start in range(0, len(articles), self.batch_size):
            s, k = self.model.score_articles(claim, articles[start:start + self.batch_size])
            scores.append(s.cpu())
            keys.append(k)
        return sentences, torch.cat(scores).numpy().astype(np.float64), keys

    def score(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        if not candidates:
            return np.zeros(0)
        return self._run(query, candidates)[1]

    def explain(self, query: str, candidates: Sequence[Candidate]) -> list[dict[str, Any]]:
        """Key sentences per article: ``[{"key_sentences": [{"sentence", "index", "weight", "pattern"}]}]``."""
        return self.score_and_explain(query, candidates)[1]

    def score_and_explain(self, query: str, candidates: Sequence[Candidate]) -> tuple[np.ndarray, list[dict]]:
        """Scores and key sentences from one pass of the matcher."""
        sentences, scores, keys = self._run(query, candidates)
        out = []
        for chunk_start, k in zip(range(0, len(candidates), self.batch_size), keys):
            for row in range(k.indices.shape[0]):
                article = sentences[chunk_start + row]
                chosen = [{"sentence": article[i], "index": i, "weight": float(w), "pattern": int(p)}
                          for i, w, p in zip(k.indices[row].tolist(), k.weights[row].tolist(),
                                             k.patterns[row].tolist()) if i >= 0]
                out.append({"key_sentences": chosen})
        return scores, out

    # ------------------------------------------------------------------------------------- persistence
    def save(self, directory: str | Path, name: str = "mtm.minilm") -> Path:
        """Write ``model.safetensors``, ``mtm_config.json``, the BERT config and tokenizer, and the manifest."""
        from safetensors.torch import save_file

        from polyrank.shared.atomic import atomic_directory
        from polyrank.shared.registry import write_manifest

        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            tmp = Path(tmp)
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, str(tmp / "model.safetensors"))
            (tmp / "mtm_config.json").write_text(json.dumps(self.model_config(), indent=2))
            self.model.bert.config.save_pretrained(str(tmp / "bert"))
            self.tokenizer.save_pretrained(str(tmp / "bert"))
            write_manifest(tmp, name)
        return directory

    def model_config(self) -> dict[str, Any]:
        m = self.model
        return {"n_key_sentences": m.k, "n_patterns": int(m.memory.shape[0]), "lambda_q": m.lambda_q,
                "lambda_p": m.lambda_p, "n_mlp_layers": len(m.head.linears), "dropout": m.head.dropout.p,
                "max_length": m.max_length, "claim_max_length": m.claim_max_length, "backbone": self.backbone}

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, **overrides: Any) -> MTMReranker:
        """Rebuild a saved reranker (safetensors; no pickle)."""
        from safetensors.torch import load_file
        from transformers import BertConfig

        directory = Path(directory)
        cfg_path = directory / "mtm_config.json"
        if not cfg_path.is_file():
            raise PolyrankError(f"{directory} has no mtm_config.json; expected a directory written by MTMReranker.save")
        cfg = json.loads(cfg_path.read_text())
        backbone = cfg.pop("backbone", "tiny")
        unknown = sorted(set(overrides) - set(_CONFIG_KEYS) - {"batch_size"})
        if unknown:
            raise PolyrankError(f"unknown MTM override(s) {unknown}; valid: {sorted(_CONFIG_KEYS) + ['batch_size']}")
        batch_size = overrides.pop("batch_size", 64)
        cfg.update(overrides)
        tokenizer = load_tokenizer(directory / "bert")
        model = MTM(BertConfig.from_pretrained(str(directory / "bert")), cls_id=tokenizer.cls_token_id,
                    sep_id=tokenizer.sep_token_id, **cfg)
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        return cls(model, tokenizer, backbone=backbone, device=device, batch_size=batch_size)

    @classmethod
    def untrained(cls, backbone: str = "tiny", device: str | None = None, **kwargs: Any) -> MTMReranker:
        """A reranker straight from a backbone (no ROT, empty memory): only for smoke tests and shapes."""
        from polyrank.domains.mtm.module import build_mtm

        tok_dir, _, _ = resolve_backbone(backbone)
        return cls(build_mtm(backbone, **kwargs), load_tokenizer(tok_dir), backbone=backbone, device=device)
