"""Candidate store: a FAISS index under external ids, with metadata and atomic, checksummed saves.

``from polyrank.shared.store import CandidateStore`` is the public entry point; see
:mod:`polyrank.shared.store.candidate_store` for the rules (ids, scores, training, removal, GPU) and
:mod:`polyrank.shared.store.persistence` for the on-disk format.
"""

from polyrank.shared.store.candidate_store import DEFAULT_EF_SEARCH, DEFAULT_NPROBE, CandidateStore
from polyrank.shared.store.persistence import FORMAT_VERSION
from polyrank.shared.store.validation import StoreError

__all__ = ["CandidateStore", "StoreError", "FORMAT_VERSION", "DEFAULT_NPROBE", "DEFAULT_EF_SEARCH"]
