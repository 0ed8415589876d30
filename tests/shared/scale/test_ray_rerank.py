"""Ray Data batch reranking: the same run as in-process for every domain's tiny reranker, retries, no drops."""

from __future__ import annotations

import warnings

import pytest

from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import rerank_run
from polyrank.shared.registry import UntrainedWeightsWarning, list_rerankers, load
from polyrank.shared.scale import RerankerSpec

from scale_helpers import build_length_reranker, domain_run

# one tiny reranker per domain (the text domain's cross-encoder stands for its LLM families, which share it)
TINY = sorted({name.split(".")[0]: name for name in reversed(list_rerankers("*.tiny"))
               if not name.startswith("text.") or name == "text.cross_encoder.tiny"}.values())


# each domain costs 10-30 s here (2 actors import torch and build the model on 2 shared cores): the default suite
# keeps the fastest (ranknovo); every other domain runs with -m slow, so the default Ray tests stay under 60 s
DEFAULT = ("ranknovo.tiny",)


@pytest.mark.parametrize("name", [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in TINY])
def test_ray_run_equals_in_process_run(name, ray_cluster, tmp_path):
    """Guards: a Ray path that regroups, reorders, drops or rescales batches, or pickles the driver's model."""
    run, queries, corpus = domain_run(name.split(".")[0], tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        saved = load(name).save(tmp_path / "saved")
    local = rerank_run(run, load(saved), queries, corpus, depth=4, batch_size=2)
    distributed = rerank_run(run, str(saved), queries, corpus, depth=4, batch_size=2, ray="local", actors=2)
    assert distributed == local  # exact: same batches, same weights, scores compared bit for bit
    assert sorted(distributed) == sorted(run) and all(len(distributed[q]) == len(run[q]) for q in run)


def test_dead_actor_batch_is_retried_not_dropped(ray_cluster, tmp_path):
    """Guards: a batch whose actor dies mid-call being dropped (a run missing queries) instead of re-run."""
    run, queries, corpus = domain_run("text", tmp_path, n_queries=6)
    marker = tmp_path / "died-once"
    spec = RerankerSpec(builder=build_length_reranker, overrides={"die_marker": str(marker)})
    distributed = rerank_run(run, spec, queries, corpus, depth=3, batch_size=2, ray="local", actors=2)
    assert marker.exists(), "the actor never died: the test did not exercise a failure"
    assert distributed == rerank_run(run, build_length_reranker(), queries, corpus, depth=3, batch_size=2)


def test_reranker_error_fails_the_job(ray_cluster, tmp_path):
    """Guards: an exception in the reranker silently leaving queries out of the run."""
    run, queries, corpus = domain_run("text", tmp_path)
    spec = RerankerSpec(builder=build_length_reranker, overrides={"fail": True})
    with pytest.raises(PolyrankError, match="Ray reranking failed"):
        rerank_run(run, spec, queries, corpus, depth=3, batch_size=2, ray="local", actors=1)


def test_actor_that_always_dies_fails_after_bounded_retries(ray_cluster, tmp_path):
    """Guards: Ray Data's unbounded default restarts turning a crashing reranker into a job that never ends."""
    import time

    from polyrank.shared.scale.ray_rerank import score_batches

    run, queries, corpus = domain_run("text", tmp_path, n_queries=2)
    spec = RerankerSpec(builder=build_length_reranker, overrides={"always_die": True})
    start = time.monotonic()
    with pytest.raises(PolyrankError, match="Ray reranking failed"):
        score_batches(spec, [([queries["q0"]], [[]])], actors=1, max_retries=1)
    assert time.monotonic() - start < 120


def test_built_model_is_not_pickled_into_actors(tmp_path):
    """Guards: a built reranker being pickled blindly into actors (no Ray needed: refused before starting)."""
    run, queries, corpus = domain_run("text", tmp_path)
    with pytest.raises(PolyrankError, match="registry name"):
        rerank_run(run, build_length_reranker(), queries, corpus, ray="local")


def test_bad_name_override_or_checkpoint_fails_before_ray_starts(tmp_path):
    """Guards: a typo surfacing only as an actor crash after a cluster has started (or never, if retried)."""
    run, queries, corpus = domain_run("text", tmp_path)
    for spec, message in ((RerankerSpec("mtm.tinyy"), "unknown reranker"),
                          (RerankerSpec("mtm.tiny", overrides={"windw": 3}), "does not accept"),
                          (RerankerSpec("mtm.tiny", checkpoint=str(tmp_path / "none.ckpt")), "does not exist")):
        with pytest.raises(PolyrankError, match=message):
            rerank_run(run, spec, queries, corpus, ray="ray://nowhere:1")
