"""Scale-out: Ray Data batch reranking and encoding (:mod:`.ray_rerank`, :mod:`.ray_encode`).

Light on import: Ray is imported only when a distributed path runs (``pip install 'ray[data]'``). The Milvus
candidate-store backend lives in :mod:`polyrank.shared.store.milvus`; multi-process training is Lightning DDP /
FSDP through :func:`polyrank.shared.trainer.build_trainer` (``--trainer.devices``, ``--trainer.num_nodes``).
"""

from polyrank.shared.scale.session import RerankerSpec, ray_session

__all__ = ["RerankerSpec", "ray_session"]
