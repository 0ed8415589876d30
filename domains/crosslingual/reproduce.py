"""Reproductions of Litschko et al. (2022) settings (``configs/crosslingual/*.yaml``): CLEF-2003 pairs (MAP) and HC4
(nDCG@20, MAP), a first stage (dense multilingual encoder into the CandidateStore for CLIR, BM25 for monolingual),
the top ``depth`` reranked by module files composed on the base, each pair's figures returned as ``<pair>/<measure>``
(plus ``<pair>/p_vs_full`` when a full fine-tuning module is given). The paper's headline numbers could not be
retrieved (reference notes, Sec. 2.3), so every config's expected figures are ``unknown``.
"""

from __future__ import annotations

from pathlib import Path

from polyrank.shared.reproduce import Reproduction, data_dir


class CLIRReproduction(Reproduction):
    """One paper setting over its language pairs.

    Args:
        collection: ``clef`` (CLEF-2003, layout of datasets/clef2003/README.md) or ``hc4`` (datasets/hc4/README.md).
        pairs: language pairs ``<query>-<document>`` (``en-de``; HC4: ``en-fa``, ``en-ru``, ``en-zh``; ``de-de``
            monolingual).
        base: base encoder folder (mBERT in the paper), ``e5`` or ``tiny``.
        ranking_module: module folder of the ranking adapter / SFTM / full fine-tuned ranker.
        language_modules: ``{language: module folder}`` (the target-language adapters or SFTMs).
        reference_module: full fine-tuning ranking module for the paired test (None: no test).
        first_stage: ``dense`` (multilingual encoder; CLIR in the paper) or ``bm25`` (monolingual in the paper).
        encoder: dense first-stage encoder folder (None: the rebuilt multilingual-e5-small).
        split: route query tokens through the query-language module (``Split``).
        invertible: ``drop`` (the paper's default) or ``keep`` the invertible adapters at inference.
        depth: documents reranked per query (the paper: 100; the rest keep their order).
        root: data folder (None: ``<data_dir>/crosslingual/<collection>``).
    """

    def __init__(self, collection: str, pairs: list[str], base: str, ranking_module: str,
                 language_modules: dict[str, str] | None = None, reference_module: str | None = None,
                 first_stage: str = "dense", encoder: str | None = None, split: bool = False,
                 invertible: str = "drop", depth: int = 100, root: str | None = None) -> None:
        self.collection, self.pairs, self.base, self.ranking_module = collection, pairs, base, ranking_module
        self.language_modules = dict(language_modules or {})
        self.reference_module, self.first_stage, self.encoder = reference_module, first_stage, encoder
        self.split, self.invertible, self.depth = split, invertible, depth
        shared = data_dir()
        self.root = Path(root) if root else (shared / "crosslingual" / ("clef2003" if collection == "clef" else "hc4")
                                             if shared else None)

    def missing(self) -> list[str]:
        from polyrank.domains.crosslingual.data import clef_layout

        out = []
        if self.root is None or not self.root.is_dir():
            out.append(f"{self.collection} data folder {self.root} (see datasets/"
                       f"{'clef2003' if self.collection == 'clef' else 'hc4'}/README.md)")
        elif self.collection == "clef":
            for pair in self.pairs:
                q, d = pair.split("-")
                out += [f"{p}" for p in clef_layout(self.root, q, d).values() if not p.exists()]
        else:
            for pair in self.pairs:
                doc = {"fa": "fas", "ru": "rus", "zh": "zho"}[pair.split("-")[1]]
                if not (self.root / doc / "docs.jsonl").is_file():
                    out.append(f"{self.root / doc / 'docs.jsonl'} (HC4 documents, see datasets/hc4/README.md)")
        if self.base not in ("e5", "tiny") and not (Path(self.base) / "config.json").is_file():
            out.append(f"base model folder {self.base}")
        for module in [self.ranking_module, self.reference_module, *self.language_modules.values()]:
            if module and not (Path(module) / "module.json").is_file():
                out.append(f"module {module} (train it with polyrank fit, see configs/crosslingual/)")
        return out

    def _pair_data(self, pair: str):
        from polyrank.domains.crosslingual import data as D

        q, d = pair.split("-")
        if self.collection == "clef":
            files = D.clef_layout(self.root, q, d)
            topics = D.read_clef_topics(files["topics"])
            from polyrank.shared.runs import read_qrels

            qrels = read_qrels(files["qrels"])
            queries = {t: f"{v['title']} {v.get('desc', '')}".strip() for t, v in topics.items() if t in qrels}
            return queries, D.read_clef_collection(files["collection"]), qrels
        doc = {"fa": "fas", "ru": "rus", "zh": "zho"}[d]
        topics, qrels = D.load_hc4(self.root, "test", doc)
        queries = {t: v.text("eng", "original") for t, v in topics.items() if t in qrels}
        ids = D.read_id_list(self.root / doc / "ids.jsonl") if (self.root / doc / "ids.jsonl").is_file() else None
        return queries, D.read_hc4_documents(self.root / doc / "docs.jsonl", ids), qrels

    def run(self) -> dict[str, float]:
        from polyrank.domains.crosslingual import model as M
        from polyrank.domains.crosslingual.evaluation import evaluate_pairs
        from polyrank.domains.crosslingual.first_stage import RebuiltE5Encoder, bm25_run, dense_run
        from polyrank.shared.protocol import rerank_run

        encoder = RebuiltE5Encoder(self.encoder) if self.first_stage == "dense" else None
        runs, qrels_by_pair = {}, {}
        for pair in self.pairs:
            q, d = (M.language_code(x) for x in pair.split("-"))
            queries, corpus, qrels = self._pair_data(pair)
            first = dense_run(encoder, corpus, queries, k=1000) if encoder else bm25_run(
                corpus, queries, k=1000, stopwords="en" if d == "en" else None)
            langs = {lang: M.ModuleFile.load(path) for lang, path in self.language_modules.items()
                     if M.language_code(lang) in (q, d)}
            systems = {"system": self.ranking_module, **({"full": self.reference_module} if self.reference_module
                                                         else {})}
            runs[pair] = {"first stage": first}
            for name, path in systems.items():
                module = M.ModuleFile.load(path)
                reranker = M.build_reranker("crosslingual.modular", self.base, module,
                                            langs if module.kind != "ranking_full" else {},
                                            M.Setup(q, d, split=self.split, invertible=self.invertible))
                runs[pair][name] = rerank_run(first, reranker, queries, corpus, depth=self.depth)
            qrels_by_pair[pair] = qrels
        results = evaluate_pairs(runs, qrels_by_pair, self.collection, reference="full")
        out = {}
        for r in results:
            if r.system == "system":
                out.update({f"{r.pair}/{m}": v for m, v in r.means.items()})
                out.update({f"{r.pair}/p_vs_full_{m}": p for m, p in r.p_values.items() if p is not None})
        return out
