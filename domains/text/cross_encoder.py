"""The shared monoBERT cross-encoder (:mod:`polyrank.shared.cross_encoder`) as the text domain's trainable reranker.

``polyrank fit --config configs/text/cross_encoder_tiny.yaml`` trains
:class:`~polyrank.shared.cross_encoder.CrossEncoderModule` on a BEIR folder through :class:`BeirPairsDataModule`
((query, relevant passage, 1) plus (query, BM25 or random non-relevant passage, 0) pairs, monoBERT's pointwise
recipe, Nogueira & Cho 2019, Sec. 3); ``load("text.cross_encoder", checkpoint=".../last.ckpt")`` serves exactly
those weights (the architecture comes from the checkpoint's hyper-parameters; keys load strictly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np

from polyrank.shared.cross_encoder import CrossEncoder, CrossEncoderReranker, build_cross_encoder
from polyrank.shared.errors import PolyrankError
from polyrank.shared.registry import write_manifest

INNER = "cross_encoder"
MODULE = "CrossEncoderModule"


class TextCrossEncoder(CrossEncoderReranker):
    """A :class:`CrossEncoderReranker` that records its registry name (``save`` -> ``load(dir)`` rebuilds it)."""

    def __init__(self, model: CrossEncoder, tokenizer: Any, registry_name: str, max_length: int = 256,
                 batch_size: int = 32, device: str | None = None, token_budget: int | None = None) -> None:
        super().__init__(model, tokenizer, max_length, batch_size, device, token_budget=token_budget)
        self.name = registry_name

    def save(self, directory: str | Path) -> Path:
        """``polyrank.json`` + ``cross_encoder/`` (the shared reranker's safetensors folder); atomic."""
        from polyrank.shared.atomic import atomic_directory

        directory = Path(directory)
        with atomic_directory(directory) as staging:
            CrossEncoderReranker.save(self, Path(staging) / INNER)
            write_manifest(staging, self.name)
        return directory


def from_lightning_checkpoint(path: str | Path) -> tuple[CrossEncoder, Any, dict[str, Any]]:
    """``(model, tokenizer, hparams)`` of a ``CrossEncoderModule`` checkpoint; missing/unexpected/misshapen keys are
    an error naming them."""
    from polyrank.shared.checkpoints import read_lightning_checkpoint

    ckpt = read_lightning_checkpoint(path, prefix="model.", module=MODULE)
    hp = ckpt.hparams
    if "tiny" not in hp or "max_length" not in hp:
        raise PolyrankError(f"{path} has no CrossEncoderModule hyper-parameters (tiny, max_length, ...); pass a "
                            "checkpoint written by `polyrank fit --config configs/text/cross_encoder_tiny.yaml`")
    model, tokenizer = build_cross_encoder(hp.get("encoder"), seed=int(hp.get("seed", 0)), tiny=bool(hp["tiny"]))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ckpt.state_dict))
    unexpected = sorted(set(ckpt.state_dict) - set(expected))
    misshapen = sorted(k for k in set(expected) & set(ckpt.state_dict) if expected[k].shape != ckpt.state_dict[k].shape)
    if missing or unexpected or misshapen:
        raise PolyrankError(f"{path} does not match the CrossEncoder its hyper-parameters describe: missing "
                            f"{missing[:5]}, unexpected {unexpected[:5]}, misshapen {misshapen[:5]}")
    model.load_state_dict(ckpt.state_dict, strict=True)
    return model, tokenizer, dict(hp)


def build(name: str, checkpoint: str | None, device: str | None, tiny: bool, encoder: str | None = None,
          max_length: int | None = None, batch_size: int = 32, seed: int = 0,
          token_budget: int | None = None) -> TextCrossEncoder:
    """The builder behind ``text.cross_encoder`` / ``text.cross_encoder.tiny`` (see the registry); ``batch_size``
    caps the pairs and ``token_budget`` the padded tokens of one forward pass."""
    from polyrank.shared.checkpoints import is_lightning_checkpoint
    from polyrank.shared.registry import MANIFEST, warn_untrained

    if checkpoint is not None and is_lightning_checkpoint(checkpoint):
        model, tokenizer, hp = from_lightning_checkpoint(checkpoint)
        return TextCrossEncoder(model, tokenizer, name, max_length or int(hp["max_length"]), batch_size, device,
                                token_budget)
    if checkpoint is not None:
        folder = Path(checkpoint)
        inner = folder / INNER if (folder / MANIFEST).is_file() else folder
        saved = CrossEncoderReranker.load(inner, device=device, batch_size=batch_size)
        return TextCrossEncoder(saved.model, saved.tokenizer, name, max_length or saved.max_length, batch_size,
                                device, token_budget)
    model, tokenizer = build_cross_encoder(encoder, seed=seed, tiny=tiny)
    warn_untrained(name, "a random 2-layer BERT" if tiny else "pretrained encoder, untrained relevance head")
    return TextCrossEncoder(model, tokenizer, name, max_length or 256, batch_size, device, token_budget)


def unjudged_negatives(pools: dict[str, list[str]], qrels: dict[str, dict[str, int]], per_query: int
                       ) -> dict[str, list[str]]:
    """The first ``per_query`` documents of each query's first-stage pool (best first) that are not judged
    relevant (gain <= 0 or unjudged): hard negatives that are never a judged positive."""
    return {q: [d for d in pool if qrels.get(q, {}).get(d, 0) <= 0][:per_query] for q, pool in pools.items()}


def bm25_negatives(corpus: dict[str, str], queries: dict[str, str], qrels: dict[str, dict[str, int]], per_query: int,
                   depth: int = 50) -> dict[str, list[str]]:
    """The ``per_query`` best-scoring BM25 (bm25s) passages of each query that are not judged relevant."""
    from polyrank.domains.text.decompose import BM25Searcher

    searcher = BM25Searcher(corpus)
    qids = list(queries)
    pools = searcher([queries[q] for q in qids], depth)
    return unjudged_negatives({q: [d for d, _ in pool] for q, pool in zip(qids, pools)}, qrels, per_query)


def listwise_groups(queries: dict[str, str], corpus: dict[str, Any], qrels: dict[str, dict[str, int]],
                    negatives: dict[str, list[str]], group_negatives: int, seed: int = 0
                    ) -> list[tuple[str, Any, list[Any]]]:
    """``(query, positive, [negatives])`` groups for ``loss="listwise"``: one group per judged positive, its
    ``group_negatives`` negatives drawn without replacement from the query's hard negatives (seeded); queries
    without a positive or a negative are skipped. Raises if a negative is a judged positive of its query."""
    rng = np.random.default_rng(seed)
    groups = []
    for q in sorted(queries):
        positives = sorted(d for d, g in qrels.get(q, {}).items() if g > 0 and d in corpus)
        pool = [d for d in negatives.get(q, []) if d in corpus]
        leaked = [d for d in pool if qrels.get(q, {}).get(d, 0) > 0]
        if leaked:
            raise PolyrankError(f"negatives of query {q} include its judged positives {leaked[:3]}")
        if not positives or not pool:
            continue
        for d in positives:
            picked = rng.choice(len(pool), size=min(group_negatives, len(pool)), replace=False)
            groups.append((queries[q], corpus[d], [corpus[pool[i]] for i in sorted(picked)]))
    return groups


class BeirPairsDataModule(L.LightningDataModule):
    """(query, passage, label) pairs from a BEIR folder for pointwise cross-encoder training.

    Args:
        folder: BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv); None: the embedded Cranfield collection.
        split: qrels split to train on (``qrels/<split>.tsv``).
        negatives: ``bm25`` (top BM25 non-relevant passages, hard negatives) or ``random`` (uniform non-relevant).
        negatives_per_positive: negatives drawn per relevant (query, passage) pair.
        max_queries: use at most this many judged queries (sorted by id; None: all).
        batch_size: pairs (``bce``) or groups (``listwise``) per batch.
        seed: seed of the negative sampling and of the loader's shuffling (own generators; global RNG untouched).
        loss: ``bce``: (query, passage, 0/1) pairs; ``listwise``: (query, relevant passage, [negatives_per_positive
            negatives]) groups. Must match the model's ``loss``.
    """

    def __init__(self, folder: str | None = None, split: str = "test", negatives: Literal["bm25", "random"] = "bm25",
                 negatives_per_positive: int = 1, max_queries: int | None = None, batch_size: int = 16,
                 seed: int = 0, loss: Literal["bce", "listwise"] = "bce") -> None:
        super().__init__()
        if loss not in ("bce", "listwise"):
            raise PolyrankError(f"loss must be 'bce' or 'listwise', got {loss!r}")
        self.save_hyperparameters()
        self.pairs: list[tuple] = []

    def _collection(self) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
        from polyrank.shared.runs import load_beir

        if self.hparams.folder is None:
            from polyrank.shared.cranfield import read_cranfield
            from polyrank.shared.embedded import locate
            from polyrank.shared.reproduce import data_dir

            corpus, queries, qrels = read_cranfield(locate("cranfield", data_dir()).path)
        else:
            corpus, queries, qrels = load_beir(self.hparams.folder, split=self.hparams.split)
        texts = {d: f"{v.get('title', '')} {v.get('text', '')}".strip() for d, v in corpus.items()}
        return texts, queries, qrels

    def setup(self, stage: str | None = None) -> None:
        if self.pairs:
            return
        corpus, queries, qrels = self._collection()
        judged = sorted(q for q in qrels if q in queries and any(g > 0 and d in corpus for d, g in qrels[q].items()))
        judged = judged[: self.hparams.max_queries] if self.hparams.max_queries else judged
        if not judged:
            raise PolyrankError(f"{self.hparams.folder or 'Cranfield'}: no query has a relevant passage in the corpus "
                                f"(qrels split {self.hparams.split!r}); check the folder and split")
        per = self.hparams.negatives_per_positive
        rng = np.random.default_rng(self.hparams.seed)
        doc_ids = sorted(corpus)
        n_pos = {q: sum(1 for d, g in qrels[q].items() if g > 0 and d in corpus) for q in judged}
        hard = bm25_negatives(corpus, {q: queries[q] for q in judged}, qrels, per * max(n_pos.values())) \
            if self.hparams.negatives == "bm25" else {}
        pools = {}
        for q in judged:
            positives = sorted(d for d, g in qrels[q].items() if g > 0 and d in corpus)
            pools[q] = hard.get(q) or [d for d in rng.permutation(doc_ids)[: 4 * per * len(positives) + 8]
                                       if qrels[q].get(d, 0) <= 0]
            if self.hparams.loss == "bce":
                self.pairs += [(queries[q], corpus[d], 1) for d in positives]
                self.pairs += [(queries[q], corpus[d], 0) for d in pools[q][: per * len(positives)]]
        if self.hparams.loss == "listwise":
            self.pairs = listwise_groups({q: queries[q] for q in judged}, corpus, qrels, pools, per, self.hparams.seed)

    def train_dataloader(self):
        from polyrank.shared.trainer import shuffled_loader

        return shuffled_loader(self.pairs, self.hparams.batch_size, self.hparams.seed)
