"""Batch reranking on a Ray cluster: query batches through ``Dataset.map_batches`` over a reranker actor pool.

:func:`polyrank.shared.protocol.rerank_run` cuts the run into the same query batches as its in-process path
(sorted query ids, ``batch_size`` per batch) and hands them here; each batch is one dataset row, each actor of
the pool rebuilds the reranker once from its :class:`~polyrank.shared.scale.session.RerankerSpec` and scores
whole batches with ``score_batch``. Because the batches (hence padding and batching inside the reranker) are
the in-process ones, the scores are the in-process scores.

Failures: an actor that dies (crash, OOM kill, lost node) is restarted by Ray and its batch re-run, up to
``max_retries`` times; an exception raised by the reranker fails the job. Either way no batch is dropped:
every batch's scores come back exactly once or :func:`score_batches` raises.

Transport: a batch travels as ``pickle`` bytes made by this driver for its own actors (queries and candidate
contents are arbitrary Python objects: texts, image paths, spectra); scores come back as raw float64 bytes.
Nothing read from disk is unpickled.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from polyrank.shared.errors import PolyrankError
from polyrank.shared.scale.session import DEFAULT_MAX_RETRIES, RerankerSpec, ray_session

logger = logging.getLogger(__name__)


class RerankActor:
    """One reranker per actor, built in the actor's process from its spec; scores one query batch per row."""

    def __init__(self, spec: RerankerSpec) -> None:
        self.reranker = spec.build()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scores, lengths = [], []
        for payload in batch["payload"]:
            queries, heads = pickle.loads(payload)  # bytes this job's driver pickled (see the module docstring)
            scored = self.reranker.score_batch(queries, heads)
            if len(scored) != len(queries):
                raise PolyrankError(f"{type(self.reranker).__name__}.score_batch returned {len(scored)} score "
                                    f"arrays for {len(queries)} queries")
            flat = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scored]
            scores.append(np.concatenate(flat).tobytes() if flat else b"")
            lengths.append(np.array([len(s) for s in flat], dtype=np.int64).tobytes())
        return {"position": np.asarray(batch["position"]), "scores": np.array(scores, dtype=object),
                "lengths": np.array(lengths, dtype=object)}


def score_batches(spec: RerankerSpec, batches: Sequence[tuple[list[Any], list[list[Any]]]],
                  address: str | None = "local", actors: int = 2, num_gpus: float = 0.0, num_cpus: float = 1.0,
                  max_retries: int = DEFAULT_MAX_RETRIES, progress: bool = False) -> list[list[np.ndarray]]:
    """``score_batch(queries, heads)`` of every ``(queries, heads)`` batch, computed by a Ray actor pool.

    Args:
        spec: how each actor builds the reranker.
        batches: query batches, in order; the result has one list of score arrays per batch, in that order.
        address: ``"local"`` (start a local cluster), a cluster address, or anything when Ray is already
            initialised in this process (that session is used as is).
        actors: actors in the pool (one model each).
        num_gpus: GPUs per actor (fractions share a GPU); 0 runs CPU actors.
        num_cpus: CPUs per actor.
        max_retries: restarts of a dead actor and re-runs of its batch before the job fails.
        progress: Ray Data's progress bars on stderr.
    """
    if actors < 1:
        raise PolyrankError(f"actors must be >= 1, got {actors}")
    spec.check()
    if not batches:
        return []
    with ray_session(address, num_cpus=None) as ray:
        import ray.data

        context = ray.data.DataContext.get_current()
        saved = context.enable_progress_bars
        context.enable_progress_bars = progress
        try:
            rows = [{"position": i, "payload": pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)}
                    for i, batch in enumerate(batches)]
            dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * actors))
            with warnings.catch_warnings():  # bounded restarts/retries have no named parameter in Ray 2.60
                warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
                scored = dataset.map_batches(
                    RerankActor, fn_constructor_args=(spec,), batch_size=1, batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=num_gpus or None, num_cpus=num_cpus,
                    # bounded restarts/retries (Ray Data's default is unbounded: an actor that always crashes would
                    # loop for ever); Ray 2.60 has no named parameter for them yet, hence the deprecation filter
                    max_restarts=max_retries, max_task_retries=max_retries)
            try:
                results = scored.take_all()
            except Exception as exc:  # Ray wraps the reranker's error (RayTaskError, UserCodeException...)
                raise PolyrankError(f"Ray reranking failed ({type(exc).__name__}): "
                                    f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}") from exc
        finally:
            context.enable_progress_bars = saved
    return _gathered(results, batches)


def _gathered(results: list[dict[str, Any]], batches: Sequence[tuple[list[Any], list[list[Any]]]]
              ) -> list[list[np.ndarray]]:
    """Results back in batch order; a batch missing or returned twice is an error, never a silent gap."""
    out: list[list[np.ndarray] | None] = [None] * len(batches)
    for row in results:
        position = int(row["position"])
        if out[position] is not None:
            raise PolyrankError(f"Ray returned query batch {position} twice; the run is not assembled")
        lengths = np.frombuffer(row["lengths"], dtype=np.int64)
        flat = np.frombuffer(row["scores"], dtype=np.float64)
        if int(lengths.sum()) != len(flat):
            raise PolyrankError(f"query batch {position}: scores and lengths disagree in Ray's result")
        out[position] = np.split(flat.copy(), np.cumsum(lengths)[:-1]) if len(lengths) else []
    missing = [i for i, scores in enumerate(out) if scores is None]
    if missing:
        raise PolyrankError(f"Ray returned no scores for {len(missing)} of {len(batches)} query batches "
                            f"(e.g. {missing[:5]}); nothing is dropped silently: rerun the job")
    return out  # type: ignore[return-value]
