"""Orders from listwise/setwise judges: RankGPT sliding windows, setwise heap sort.

A listwise reranker produces an order, not scores; the core's :func:`polyrank.shared.protocol.order_to_scores`
(re-exported here) gives the protocol, which sorts by score, that order exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


from polyrank.shared.protocol import order_to_scores

__all__ = ["order_to_scores", "setwise_heapsort_top_k", "sliding_window_order"]


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


def setwise_heapsort_top_k(n: int, k: int, num_child: int, best_of: Callable[[list[int]], int]) -> list[int]:
    """Setwise heap sort (Zhuang et al., SIGIR 2024; Rank-R1 arXiv 2503.06034, Sec. 3): a max-heap over the
    first-stage list where node ``i`` has children ``c*i+1 .. c*i+c`` (``c = num_child``); every sift-down step
    asks ``best_of([parent, child, ...])`` for the position of the best item in that set (one LLM call).

    The top ``k`` are extracted best first; the others follow in first-stage order (as llm-rankers does).
    Returns the final order (indices, best first). ``best_of`` must return a position in its argument.
    """
    if num_child < 1:
        raise ValueError(f"num_child must be >= 1, got {num_child}")
    heap = list(range(n))

    def sift_down(i: int, size: int) -> None:
        while num_child * i + 1 < size:
            nodes = [i, *range(num_child * i + 1, min(num_child * i + num_child + 1, size))]
            best = best_of([heap[j] for j in nodes])
            if not 0 <= best < len(nodes):
                raise ValueError(f"best_of returned {best} for a set of {len(nodes)}")
            if best == 0:
                return
            winner = nodes[best]
            heap[i], heap[winner] = heap[winner], heap[i]
            i = winner

    for i in range((n - 2) // num_child, -1, -1):
        sift_down(i, n)
    top: list[int] = []
    size = n
    while size and len(top) < k:
        top.append(heap[0])
        size -= 1
        heap[0] = heap[size]
        if len(top) < k:
            sift_down(0, size)
    chosen = set(top)
    return top + [i for i in range(n) if i not in chosen]
