"""MTM as a :class:`~polyrank.shared.protocol.Reranker`: a claim against candidate articles (sentence lists).

``explain`` returns each article's key sentences with their selection weights and pattern slots, which
is MTM's evidence for a ranking. ``save``/``load`` write safetensors + JSON (never pickle);
``from_lightning_checkpoint`` serves the ``last.ckpt``/``best-*.ckpt`` that ``polyrank fit`` writes for
:class:`~polyrank.domains.mtm.module.MTMModule` (weights_only, strict).
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

from polyrank.domains.mtm.encoding import global_rng_untouched, load_tokenizer, resolve_backbone, tokenize
from polyrank.domains.mtm.model import MTM
from polyrank.domains.mtm.registry import OPTIONS
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate, Reranker

logger = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_CONFIG_KEYS = ("n_key_sentences", "n_patterns", "lambda_q", "lambda_p", "n_mlp_layers", "dropout",
                "max_length", "claim_max_length", "head", "readout")
#: Overrides that change the weights' shapes: fixed by a trained checkpoint.
_ARCHITECTURE_KEYS = ("n_patterns", "n_mlp_layers", "head")


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
    """Scores articles for a claim with a trained :class:`MTM` (class-1 output of the matcher).

    ``registry_name`` is the registered name the reranker was built under; :meth:`save` writes it so that
    ``load(directory)`` rebuilds the same variant.
    """

    name = "mtm"

    def __init__(self, model: MTM, tokenizer: Any, backbone: str = "tiny", device: str | None = None,
                 batch_size: int = 64, registry_name: str = "mtm.minilm") -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer, self.backbone, self.batch_size = tokenizer, backbone, batch_size
        self.registry_name = registry_name

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
    def save(self, directory: str | Path, name: str | None = None) -> Path:
        """Write ``model.safetensors``, ``mtm_config.json``, the BERT config and tokenizer, and the manifest.

        ``name``: the registry name written to the manifest (default: the one this reranker was built under).
        """
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
            write_manifest(tmp, name or self.registry_name)
        return directory

    def model_config(self) -> dict[str, Any]:
        m = self.model
        return {"n_key_sentences": m.k, "n_patterns": int(m.memory.shape[0]), "lambda_q": m.lambda_q,
                "lambda_p": m.lambda_p, "n_mlp_layers": m.head.n_layers, "dropout": m.head.dropout.p,
                "max_length": m.max_length, "claim_max_length": m.claim_max_length, "head": m.head.kind,
                "readout": m.readout, "backbone": self.backbone}

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, registry_name: str = "mtm.minilm",
             **overrides: Any) -> MTMReranker:
        """Rebuild a saved reranker (safetensors; no pickle)."""
        from safetensors.torch import load_file
        from transformers import BertConfig

        directory = Path(directory)
        cfg_path = directory / "mtm_config.json"
        if not cfg_path.is_file():
            raise PolyrankError(f"{directory} has no mtm_config.json; expected a directory written by "
                                "MTMReranker.save or the last.ckpt/best-*.ckpt that `polyrank fit` writes")
        cfg = json.loads(cfg_path.read_text())
        backbone = cfg.pop("backbone", "tiny")
        batch_size = _checked_overrides(overrides, str(directory))
        cfg.update(overrides)
        with global_rng_untouched():              # the random init is overwritten; keep the global RNG as it was
            tokenizer = load_tokenizer(directory / "bert")
            model = MTM(BertConfig.from_pretrained(str(directory / "bert")), cls_id=tokenizer.cls_token_id,
                        sep_id=tokenizer.sep_token_id, **cfg)
        load_strict(model, load_file(str(directory / "model.safetensors")), str(directory / "model.safetensors"))
        return cls(model, tokenizer, backbone=backbone, device=device, batch_size=batch_size,
                   registry_name=registry_name)

    @classmethod
    def from_lightning_checkpoint(cls, path: str | Path, device: str | None = None,
                                  registry_name: str = "mtm.minilm", **overrides: Any) -> MTMReranker:
        """The matcher trained by ``polyrank fit``: ``MTMModule``'s ``model.`` weights from a ``.ckpt``.

        The architecture and the backbone (tokenizer) come from the checkpoint's hyper-parameters, so the
        ROT-trained front layers and the PMB memory (both in the state dict) are served as trained.
        """
        from polyrank.shared.checkpoints import read_lightning_checkpoint

        ckpt = read_lightning_checkpoint(path, prefix="model.", module="MTMModule")
        hp = ckpt.hparams
        if "backbone" not in hp:
            raise PolyrankError(f"{path}: its hyper-parameters have no 'backbone' (found {sorted(hp)}); expected a "
                                "checkpoint of polyrank.domains.mtm.module.MTMModule written by `polyrank fit`")
        batch_size = _checked_overrides(overrides, str(path))
        cfg = {k: hp[k] for k in _CONFIG_KEYS if k in hp}
        cfg.update(overrides)
        tok_dir, config, _ = resolve_backbone(hp["backbone"])
        with global_rng_untouched():
            tokenizer = load_tokenizer(tok_dir)
            model = MTM(config, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, **cfg)
        load_strict(model, ckpt.state_dict, f"{path} (MTMModule 'model.' weights)")
        return cls(model, tokenizer, backbone=hp["backbone"], device=device, batch_size=batch_size,
                   registry_name=registry_name)

    @classmethod
    def untrained(cls, backbone: str = "tiny", device: str | None = None, registry_name: str | None = None,
                  seed: int = 0, batch_size: int = 64, **kwargs: Any) -> MTMReranker:
        """A reranker straight from a backbone (no ROT, empty memory): only for smoke tests and shapes.

        New weights are drawn from ``seed`` on a forked RNG (:func:`global_rng_untouched`).
        """
        from polyrank.domains.mtm.model import build_mtm

        tok_dir, _, _ = resolve_backbone(backbone)
        with global_rng_untouched(seed=seed):
            model = build_mtm(backbone, **kwargs)
            tokenizer = load_tokenizer(tok_dir)
        return cls(model, tokenizer, backbone=backbone, device=device, batch_size=batch_size,
                   registry_name=registry_name or default_registry_name(backbone))


def default_registry_name(backbone: str) -> str:
    """The registered variant a backbone belongs to: ``mtm.tiny`` for ``"tiny"``, else ``mtm.minilm``."""
    return "mtm.tiny" if backbone == "tiny" else "mtm.minilm"


def _checked_overrides(overrides: dict[str, Any], source: str) -> int:
    """Pop ``batch_size`` and reject overrides a trained checkpoint cannot take (they change its shapes)."""
    fixed = sorted(set(overrides) & {*_ARCHITECTURE_KEYS, "seed"})
    if fixed:
        raise PolyrankError(f"{source}: {fixed} are fixed by the trained checkpoint (they change its weights' "
                            f"shapes or only seed random weights); drop them. Overrides that apply: "
                            f"{sorted(set(OPTIONS) - set(_ARCHITECTURE_KEYS) - {'seed'})}")
    unknown = sorted(set(overrides) - set(_CONFIG_KEYS) - {"batch_size"})
    if unknown:
        raise PolyrankError(f"unknown MTM override(s) {unknown}; valid: {sorted(_CONFIG_KEYS) + ['batch_size']}")
    return int(overrides.pop("batch_size", 64))


def load_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state)`` that names every missing, unexpected or misshapen key in its error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state)
                       if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or misshapen:
        parts = [f"{label} {keys[:8]}{' ...' if len(keys) > 8 else ''}"
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("misshapen (checkpoint vs model)", misshapen)) if keys]
        raise PolyrankError(f"{source} does not match the MTM architecture: {'; '.join(parts)}. Load it with the "
                            "hyper-parameters it was trained with (do not override n_patterns/n_mlp_layers)")
    model.load_state_dict(state, strict=True)
