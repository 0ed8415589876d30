"""MTM: Memory-enhanced Transformers for Matching (Sheng et al., ACL-IJCNLP 2021, pp. 5468-5481).

Detect previously fact-checked claims: BM25 retrieves 50 fact-checking articles for a claim and MTM
reranks them using key sentences chosen by ROUGE-guided (ROT) and pattern (PMB) closeness.

>>> from polyrank.domains.mtm import load, rank                                      # doctest: +SKIP
>>> reranker = load("mtm.tiny", checkpoint="runs/mtm/checkpoints/last.ckpt")         # doctest: +SKIP
>>> for r in rank("claim text", {"a1": ["s1", "s2"]}, model=reranker):               # doctest: +SKIP
...     print(r.rank, r.candidate_id, r.score, r.explanation["key_sentences"])

Modules: :mod:`.bm25` (first stage), :mod:`.rot` (Sec. 3.1), :mod:`.pmb` (Sec. 3.2, 3.4),
:mod:`.selection` (Sec. 3.3), :mod:`.model` (matcher), :mod:`.module` / :mod:`.datamodule` (training),
:mod:`.train` (pipeline and evaluation), :mod:`.data` (release readers), :mod:`.reranker` (API).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def load(name_or_path: str = "mtm.minilm", checkpoint: str | None = None, device: str | None = None,
         **overrides: Any):
    """A registered MTM reranker by name (``checkpoint=``: a ``polyrank fit`` ``.ckpt`` or a saved directory),
    or a trained one from a saved directory. Without a checkpoint the reranker is untrained and warns."""
    from polyrank.shared.registry import load as _load

    import polyrank.domains.mtm.registry  # noqa: F401  (registers the names)

    return _load(name_or_path, checkpoint=checkpoint, device=device, **overrides)


def rank(claim: str, articles: Any, model: Any = "mtm.minilm", top_k: int | None = None,
         checkpoint: str | None = None) -> list:
    """Rank ``articles`` for ``claim``; each result carries its key sentences and weights in ``explanation``.

    ``articles``: ``{id: [sentences]}``, ``(id, sentences)`` pairs or Candidates; ``model``: a reranker, a
    registered name (with ``checkpoint=`` a ``.ckpt`` of ``polyrank fit``) or a directory saved by
    :meth:`MTMReranker.save`. A registered name without a checkpoint is *untrained*: the builder issues an
    :class:`~polyrank.shared.registry.UntrainedWeightsWarning` and the scores mean nothing.
    """
    if checkpoint is not None and not isinstance(model, str):
        from polyrank.shared.errors import PolyrankError

        raise PolyrankError("rank(): checkpoint= applies to a registered name (model='mtm.tiny'/'mtm.minilm'), "
                            f"not to an already built {type(model).__name__}")
    reranker = load(model, checkpoint=checkpoint) if isinstance(model, str) else model
    items: Iterable[Any] = articles.items() if isinstance(articles, dict) else articles
    return reranker.rank(claim, list(items), top_k=top_k, explain=True)


__all__ = ["load", "rank"]
