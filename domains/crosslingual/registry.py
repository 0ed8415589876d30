"""Registered crosslingual rerankers (Litschko et al., COLING 2022): modular cross-encoders on a multilingual base.

* ``crosslingual.modular``: ``base=`` (``e5`` = rebuilt multilingual-e5-small, a BERT folder such as mBERT, or
  ``tiny``) + ``ranking_module=`` (a ranking adapter, SFTM or full fine-tuned module folder) + ``language_module=``
  (the document-language module; ``query_language_module=`` with ``split=True`` routes the query through another).
* ``crosslingual.{adapters,sft,full}``: the e5 base with an untrained module of that kind (warns), or
  ``checkpoint=`` a ``last.ckpt`` of ``polyrank fit --config configs/crosslingual/ranking_<kind>_tiny.yaml`` (the
  architecture from its hyper-parameters, weights strict) or a directory written by ``save``.
* ``crosslingual.{adapters,sft,full}.tiny``: the same on a random 2-layer BERT (tests; warns untrained).
Heavy imports happen inside the builders.
"""

from __future__ import annotations

from typing import Any

from polyrank.shared.registry import register_reranker

COMMON = ("max_length", "batch_size", "seed")
MODULAR = ("base", "ranking_module", "language_module", "query_language_module", "query_language",
           "document_language", "split", "invertible") + COMMON
KINDS = {"adapters": "adapter", "sft": "sft", "full": "full"}


def _guarded(build):
    """``build()`` with torch, NumPy and Python RNG states restored afterwards (contract item 3)."""
    import random

    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        import torch

        with torch.random.fork_rng(devices=[]):
            return build()
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def build_modular(name: str, base: str = "e5", ranking_module: str | None = None, language_module: str | None = None,
                  query_language_module: str | None = None, query_language: str | None = None,
                  document_language: str | None = None, split: bool = False, invertible: str = "drop",
                  max_length: int = 256, batch_size: int = 32, seed: int = 0, device: str | None = None):
    """``load(base, language_module, ranking_module)``: compose module files on a base (checked against it)."""
    from polyrank.domains.crosslingual import model as M
    from polyrank.shared.errors import PolyrankError

    if ranking_module is None:
        raise PolyrankError(f"{name} needs ranking_module=<folder of a ranking module file>")
    ranking = M.ModuleFile.load(ranking_module)
    languages: dict[str, M.ModuleFile] = {}
    for path in (language_module, query_language_module):
        if path is not None:
            module = M.ModuleFile.load(path)
            languages[M.language_code(module.language)] = module
    doc_lang = document_language or (M.ModuleFile.load(language_module).language if language_module else None)
    q_lang = query_language or (M.ModuleFile.load(query_language_module).language if query_language_module
                                else doc_lang)
    setup = M.Setup(q_lang and M.language_code(q_lang), doc_lang and M.language_code(doc_lang),
                    split=split, invertible=invertible)
    return M.build_reranker(name, base, ranking, languages, setup, seed, max_length, batch_size, device)


def _from_saved(name: str, directory, device, batch_size: int):
    import json
    from pathlib import Path

    from polyrank.domains.crosslingual import model as M

    directory = Path(directory)
    info = json.loads((directory / "polyrank.json").read_text()).get("crosslingual")
    if info is None:
        from polyrank.shared.errors import PolyrankError

        raise PolyrankError(f"{directory}/polyrank.json has no 'crosslingual' section; not a crosslingual save")
    modules = {key: M.ModuleFile.load(directory / "modules" / key) for key in info["modules"]}
    ranking = modules.pop("ranking")
    languages = {key[5:]: m for key, m in modules.items()}
    return M.build_reranker(name, info["base"], ranking, languages, M.Setup(**info["setup"]), info["seed"],
                            info["max_length"], batch_size, device)


def _from_lightning(name: str, checkpoint, device, batch_size: int, max_length: int | None):
    from polyrank.domains.crosslingual.module import RankingModule
    from polyrank.shared.checkpoints import read_lightning_checkpoint
    from polyrank.shared.errors import PolyrankError

    ckpt = read_lightning_checkpoint(checkpoint, prefix="model.", module="RankingModule")
    hp = dict(ckpt.hparams)
    if "kind" not in hp or "base" not in hp:
        raise PolyrankError(f"{checkpoint} has no RankingModule hyper-parameters (kind, base, ...); pass a checkpoint "
                            "of `polyrank fit --config configs/crosslingual/ranking_<kind>_tiny.yaml`")
    allowed = set(RankingModule.__init__.__code__.co_varnames)
    module = RankingModule(**{k: v for k, v in hp.items() if k in allowed})
    expected = module.model.state_dict()
    missing = sorted(set(expected) - set(ckpt.state_dict))
    unexpected = sorted(set(ckpt.state_dict) - set(expected))
    misshapen = sorted(k for k in set(expected) & set(ckpt.state_dict) if expected[k].shape != ckpt.state_dict[k].shape)
    if missing or unexpected or misshapen:
        raise PolyrankError(f"{checkpoint} does not match the RankingModule its hyper-parameters describe: missing "
                            f"{missing[:5]}, unexpected {unexpected[:5]}, misshapen {misshapen[:5]}")
    module.model.load_state_dict(ckpt.state_dict, strict=True)
    if module.hparams.kind == "sft":  # the trained weights are final: the diff is every entry that moved
        module.masks = {n: (p.detach().cpu() != module.theta0[n]) for n, p in module.model.named_parameters()
                        if n in module.maskable}
    reranker = module.to_reranker(name, batch_size)
    reranker.max_length = max_length or reranker.max_length
    reranker.model.to(reranker.device).eval()
    return reranker


def build_kind(name: str, kind: str, base: str, checkpoint=None, device=None, max_length: int | None = None,
               batch_size: int = 32, seed: int = 0):
    from pathlib import Path

    from polyrank.shared.checkpoints import is_lightning_checkpoint
    from polyrank.shared.registry import MANIFEST, warn_untrained

    if checkpoint is not None and is_lightning_checkpoint(checkpoint):
        return _from_lightning(name, checkpoint, device, batch_size, max_length)
    if checkpoint is not None and (Path(checkpoint) / MANIFEST).is_file():
        return _from_saved(name, checkpoint, device, batch_size)
    if checkpoint is not None:
        from polyrank.shared.errors import PolyrankError

        raise PolyrankError(f"{checkpoint} is neither a Lightning .ckpt nor a directory written by save()")
    from polyrank.domains.crosslingual.module import RankingModule

    module = RankingModule(kind=kind, base=base, seed=seed, k=100)
    if kind == "sft":
        import torch

        module.masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in module.theta0.items()
                        if n in module.maskable}
    warn_untrained(name, ("a random 2-layer BERT" if base == "tiny" else "rebuilt multilingual-e5-small") +
                   f" with an untrained ranking {kind} module")
    reranker = module.to_reranker(name, batch_size)
    reranker.max_length = max_length or reranker.max_length
    return reranker


for _variant, _kind in KINDS.items():
    for _tiny in (False, True):
        _name = f"crosslingual.{_variant}" + (".tiny" if _tiny else "")

        def _builder(checkpoint=None, device=None, _name=_name, _kind=_kind, _tiny=_tiny, **overrides: Any):
            return _guarded(lambda: build_kind(_name, _kind, "tiny" if _tiny else "e5", checkpoint, device,
                                               **overrides))

        register_reranker(_name, f"Litschko et al. 2022 ranking {_kind} module on "
                          + ("a random 2-layer BERT (tests)" if _tiny else "the rebuilt multilingual-e5-small"),
                          options=COMMON)(_builder)


@register_reranker("crosslingual.modular", "Litschko et al. 2022: base + ranking module + language module(s); "
                   "Stack(LA, RA), Split(LA_q, LA_d), or theta0 + phi_rank + phi_lang", options=MODULAR)
def _modular(checkpoint=None, device=None, **overrides: Any):
    if checkpoint is not None:
        return _guarded(lambda: _from_saved("crosslingual.modular", checkpoint, device,
                                            overrides.get("batch_size", 32)))
    return _guarded(lambda: build_modular("crosslingual.modular", device=device, **overrides))
