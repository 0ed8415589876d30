"""MTM's data side: claims, articles and BM25 candidates turned into token ids and training pairs.

Candidates come from the release's ``top50.*`` files when present (MTM Twitter/Weibo), otherwise from
BM25 top-50 over all articles (:mod:`polyrank.domains.mtm.bm25`), with the swap rule on training claims.
"""

from __future__ import annotations

import logging
import random
from typing import Literal

import lightning as L
from torch.utils.data import DataLoader, WeightedRandomSampler

from polyrank.domains.mtm.bm25 import BM25Index, first_stage
from polyrank.domains.mtm.data import FactCheckData, load_mtm_release, load_politifact
from polyrank.domains.mtm.encoding import load_tokenizer, resolve_backbone, tokenize
from polyrank.shared.errors import PolyrankError

logger = logging.getLogger(__name__)


def _identity(items):
    return items


class MTMDataModule(L.LightningDataModule):
    """Loads a fact-checking collection, builds candidates, tokenises, and serves training pairs / queries.

    Args:
        source: ``"mtm"`` (Twitter/Weibo release at ``path``), ``"politifact"`` (Vo & Lee's folder at
            ``path``) or ``"synthetic"`` (generated, for tests and the no-data demo).
        path: folder of the release (``source`` "mtm" or "politifact"); unused for "synthetic".
        backbone: whose tokenizer to use: ``"tiny"``/``"minilm"`` (MiniLM's word pieces) or a local BERT dir.
        language: ``"en"`` word-level or ``"zh"`` character-level BM25.
        n_candidates: BM25 candidates per claim when the release has no ``top50`` files (50).
        swap: when no relevant article is in a training claim's top n, put the deepest-ranked ("deepest", the
            reference) or the best-ranked ("first") relevant one in the last slot, or do nothing ("none").
        max_train_claims: subsample the training claims to this many (None: all).
        max_eval_claims: subsample the validation and test claims to this many each (None: all).
        negatives_per_claim: keep this many BM25 negatives per training claim (None = all 49).
        batch_size: training pairs per batch.
        balanced_sampling: class-balanced ``WeightedRandomSampler`` (the reference's Twitter setting).
        seed: seed of the subsampling, the negatives and the generated data.
        synthetic_claims: claims of the generated collection.
        synthetic_articles: articles of the generated collection.
        split: Politifact only: split "article" (connected components, no shared article) or "query".
        tweet_fields: Politifact only: tweet fields joined into the claim ("OriginalTweetContent_Processed",
            "OriginalTweetContent_Raw", "ocr" for the images' OCR text).
    """

    def __init__(self, source: Literal["mtm", "politifact", "synthetic"] = "synthetic", path: str | None = None,
                 backbone: str = "tiny", language: Literal["en", "zh"] = "en", n_candidates: int = 50,
                 swap: Literal["deepest", "first", "none"] = "deepest", max_train_claims: int | None = None,
                 max_eval_claims: int | None = None, negatives_per_claim: int | None = None,
                 batch_size: int = 16, balanced_sampling: bool = False, seed: int = 0,
                 synthetic_claims: int = 60, synthetic_articles: int = 30,
                 split: Literal["article", "query"] = "article",
                 tweet_fields: tuple[str, ...] = ("OriginalTweetContent_Processed",)) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.data: FactCheckData | None = None

    # ---------------------------------------------------------------------------------------------- setup
    def load(self) -> FactCheckData:
        h = self.hparams
        if h.source == "mtm":
            return load_mtm_release(h.path)
        if h.source == "politifact":
            data = load_politifact(h.path, tweet_fields=tuple(h.tweet_fields), seed=h.seed, split=h.split)
            data.candidates = {}        # query.negatives is not a first stage: BM25 builds the candidates
            return data
        from polyrank.domains.mtm.synthetic import synthetic_factcheck

        return synthetic_factcheck(h.synthetic_claims, h.synthetic_articles, seed=h.seed)

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        h = self.hparams
        data = self.load()
        rng = random.Random(h.seed)
        for split, cap in (("train", h.max_train_claims), ("val", h.max_eval_claims), ("test", h.max_eval_claims)):
            if cap is not None and len(data.splits.get(split, [])) > cap:
                data.splits[split] = sorted(rng.sample(data.splits[split], cap))
        used = sorted({q for qids in data.splits.values() for q in qids})
        if not all(q in data.candidates and len(data.candidates[q]) >= 2 for q in used):
            index = BM25Index(data.articles, h.language)
            claims = {q: data.claims[q] for q in used}
            data.candidates = first_stage(index, claims, data.qrels, h.n_candidates,
                                          swap_qids=set(data.splits.get("train", [])), swap=h.swap)
        self.data = data
        tokenizer_dir, _, _ = resolve_backbone(h.backbone)
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.cls_id, self.sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        needed_articles = sorted({d for q in used for d in data.candidates[q]} |
                                 {d for q in data.splits.get("train", []) for d in data.qrels.get(q, {})})
        self.claim_tokens = dict(zip(used, tokenize(self.tokenizer, [data.claims[q] for q in used])))
        for qid, tokens in self.claim_tokens.items():
            if not tokens:
                raise PolyrankError(f"{data.name}: claim {qid!r} has no tokens after tokenisation "
                                    f"(text {data.claims[qid]!r}); drop it or fix its text field")
        self.article_tokens = {d: tokenize(self.tokenizer, data.articles[d]) for d in needed_articles}
        self.train_pairs = self._train_pairs(rng)
        logger.info("MTM data %s: %d train pairs, splits %s", data.name, len(self.train_pairs),
                    {s: len(q) for s, q in data.splits.items()})

    def _train_pairs(self, rng: random.Random) -> list[tuple[str, str, int]]:
        pairs = []
        for qid in self.data.splits.get("train", []):
            rel = self.data.qrels.get(qid, {})
            cands = self.data.candidates[qid]
            pos = [d for d in cands if rel.get(d, 0) > 0]
            neg = [d for d in cands if rel.get(d, 0) <= 0]
            if self.hparams.negatives_per_claim is not None:
                neg = rng.sample(neg, min(len(neg), self.hparams.negatives_per_claim))
            pairs += [(qid, d, 1) for d in pos] + [(qid, d, 0) for d in neg]
        return pairs

    # -------------------------------------------------------------------------------------------- loaders
    def train_dataloader(self) -> DataLoader:
        sampler = None
        if self.hparams.balanced_sampling:
            labels = [y for _, _, y in self.train_pairs]
            counts = {c: labels.count(c) for c in set(labels)}
            weights = [len(labels) / counts[y] for y in labels]
            sampler = WeightedRandomSampler(weights, num_samples=len(labels), replacement=True)
        return DataLoader(self.train_pairs, batch_size=self.hparams.batch_size, shuffle=sampler is None,
                          sampler=sampler, collate_fn=_identity)

    def queries(self, split: str) -> list[tuple[str, list[str]]]:
        """``(qid, candidate dids)`` for each claim of a split."""
        return [(q, self.data.candidates[q]) for q in self.data.subset(split)]

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.queries("val"), batch_size=1, collate_fn=_identity)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.queries("test"), batch_size=1, collate_fn=_identity)
