"""Orders from listwise/setwise judges: RankGPT sliding windows.

A listwise reranker produces an order, not scores; the core's :func:`polyrank.shared.protocol.order_to_scores`
(re-exported here) gives the protocol, which sorts by score, that order exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


from polyrank.shared.protocol import order_to_scores

__all__ = ["order_to_scores", "sliding_window_order"]


def sliding_window_order(n: int, window: int, stride: int, judge: Callable[[list[int]], Sequence[int]]) -> list[int]:
    """RankGPT sliding windows (Sun et al., EMNLP 2023, Sec. 3.3; FIRST uses window 20, stride 10): windows of
    ``window`` items move from the bottom of the first-stage list to the top by ``stride``; ``judge(items)``
    returns the positions within ``items`` best first. Returns the final order (indices, best first).

    One pass carries any item up to the top when ``stride < window``: the top ``window - stride`` of the final
    order are exactly the judge's best items.
    """
    if window < 1 or not 0 < stride <= window:
        raise ValueError(f"need window >= 1 and 0 < stride <= window, got window={window}, stride={stride}")
    order = list(range(n))
    end = n
    while n:
        start = max(0, end - window)
        items = order[start:end]
        permutation = list(judge(items))
        if sorted(permutation) != list(range(len(items))):
            raise ValueError(f"judge returned {permutation}, not a permutation of range({len(items)})")
        order[start:end] = [items[p] for p in permutation]
        if start == 0:
            break
        end -= stride
    return order
