"""Corpus encoding on a Ray cluster for ``polyrank index --ray``: encoder batches through an actor pool.

The corpus is cut into the batches the local :class:`~polyrank.shared.text_encoder.SentenceEncoder` would form
(texts sorted by length, longest first, ``batch_size`` per batch), each batch is one shard (one dataset row),
and each actor of the pool loads the encoder once and encodes whole shards. Same batches, same padding: the
vectors are the local ones, row for row. A causal-LM encoder (``.gguf`` or ``*ForCausalLM`` folder) embeds
each shard with :class:`~polyrank.shared.llm.embedding.LLMEmbedder`. Shards come back as raw float32 bytes and
are placed at their rows as they stream in; a shard missing or returned twice is an error.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np

from polyrank.shared.errors import PolyrankError
from polyrank.shared.scale.session import DEFAULT_MAX_RETRIES, ray_session


def length_sorted_shards(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Row indices of each shard: the local encoder's batches (length descending, stable)."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return [order[start:start + batch_size] for start in range(0, len(texts), batch_size)]


class EncodeActor:
    """One encoder per actor; encodes one shard of texts per row."""

    def __init__(self, encoder: str | None, side: str, instruction: str | None) -> None:
        from polyrank.shared.llm.embedding import DEFAULT_TASK, LLMEmbedder, is_causal_lm

        self.side = side
        if is_causal_lm(encoder):
            from polyrank.shared.llm.loading import load_causal_lm

            embedder = LLMEmbedder(load_causal_lm(encoder), task=instruction or DEFAULT_TASK)
            self.encode = embedder.encode_queries if side == "queries" else embedder.encode_documents
        else:
            from polyrank.shared.text_encoder import SentenceEncoder

            self.encoder = SentenceEncoder(encoder)
            self.encode = self._sentences

    def _sentences(self, texts: list[str]) -> np.ndarray:
        self.encoder.batch_size = len(texts)  # the shard is the batch
        return self.encoder.encode(texts)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors, rows = [], []
        for shard in batch["texts"]:
            texts = json.loads(shard)
            matrix = np.ascontiguousarray(self.encode(texts), dtype=np.float32)
            vectors.append(matrix.tobytes())
            rows.append(len(texts))
        return {"position": np.asarray(batch["position"]), "vectors": np.array(vectors, dtype=object),
                "rows": np.asarray(rows, dtype=np.int64)}


def encode_with_ray(texts: Sequence[str], encoder: str | None = None, batch_size: int = 64,
                    side: Literal["queries", "documents"] = "documents", instruction: str | None = None,
                    address: str | None = "local", actors: int = 2, num_gpus: float = 0.0, num_cpus: float = 1.0,
                    max_retries: int = DEFAULT_MAX_RETRIES, progress: bool = False) -> np.ndarray:
    """``(len(texts), dim)`` float32 vectors of ``texts``, encoded by a Ray actor pool (see the module docstring).

    ``address``/``actors``/``num_gpus``/``max_retries`` as in
    :func:`polyrank.shared.scale.ray_rerank.score_batches`.
    """
    if actors < 1 or batch_size < 1:
        raise PolyrankError(f"actors and batch_size must be >= 1, got {actors} and {batch_size}")
    if not texts:
        raise PolyrankError("nothing to encode: the text list is empty")
    shards = length_sorted_shards(texts, batch_size)
    with ray_session(address) as ray:
        import ray.data

        context = ray.data.DataContext.get_current()
        saved = context.enable_progress_bars
        context.enable_progress_bars = progress
        try:
            rows = [{"position": i, "texts": json.dumps([texts[j] for j in shard])} for i, shard in enumerate(shards)]
            dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * actors))
            with warnings.catch_warnings():  # bounded restarts/retries have no named parameter in Ray 2.60
                warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
                encoded = dataset.map_batches(
                    EncodeActor, fn_constructor_args=(encoder, side, instruction), batch_size=1, batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=num_gpus or None, num_cpus=num_cpus,
                    # bounded restarts/retries (Ray Data's default is unbounded: an actor that always crashes would
                    # loop for ever); Ray 2.60 has no named parameter for them yet, hence the deprecation filter
                    max_restarts=max_retries, max_task_retries=max_retries)
            out: np.ndarray | None = None
            seen = np.zeros(len(shards), dtype=bool)
            try:  # shards stream in as actors finish them and go straight to their rows (no second copy)
                for row in encoded.iter_rows():
                    position, n = int(row["position"]), int(row["rows"])
                    if seen[position]:
                        raise PolyrankError(f"Ray returned shard {position} twice; the vectors are not assembled")
                    seen[position] = True
                    matrix = np.frombuffer(row["vectors"], dtype=np.float32).reshape(n, -1)
                    if out is None:
                        out = np.zeros((len(texts), matrix.shape[1]), dtype=np.float32)
                    out[shards[position]] = matrix
            except PolyrankError:
                raise
            except Exception as exc:
                raise PolyrankError(f"Ray encoding failed ({type(exc).__name__}): "
                                    f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}") from exc
        finally:
            context.enable_progress_bars = saved
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise PolyrankError(f"Ray returned no vectors for {len(missing)} of {len(shards)} shards (e.g. "
                            f"{missing[:5].tolist()}); nothing is dropped silently: rerun the job")
    return out  # type: ignore[return-value]
