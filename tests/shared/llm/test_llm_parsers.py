"""Parsers of LLM outputs, on well-formed and malformed text (no model needed)."""

from __future__ import annotations

from polyrank.shared.llm.parsers import ParseStats, parse_bracketed_label, parse_permutation, parse_rebel, \
    parse_think_answer

IDS = ["A", "B", "C", "D"]


def test_permutation_well_formed():
    parsed = parse_permutation("[C] > [A] > [D] > [B]", IDS)
    assert parsed.order == [2, 0, 3, 1] and not parsed.malformed and parsed.n_missing == parsed.n_dropped == 0


def test_permutation_missing_appended_in_first_stage_order_duplicates_unknown_dropped():
    # guards: missing ids appended in window order (not dropped, not reversed); duplicates/unknown ignored
    parsed = parse_permutation("[D] > [Z] > [D] > [B] > [ A ]", IDS)
    assert parsed.order == [3, 1, 0, 2]
    assert parsed.n_missing == 1 and parsed.n_dropped == 2 and not parsed.malformed


def test_permutation_malformed_falls_back_to_first_stage_order():
    for text in ["", "I think passage B is best", "[] > []", "[Q] > [R]"]:
        parsed = parse_permutation(text, IDS)
        assert parsed.malformed and parsed.order == [0, 1, 2, 3], text


def test_numeric_identifiers():
    assert parse_permutation("[2] > [10] > [1]", [str(i) for i in range(1, 11)]).order[:3] == [1, 9, 0]


def test_think_answer():
    think, answer = parse_think_answer("<think>doc 3 mentions it</think>\n<answer>[3]</answer>")
    assert think == "doc 3 mentions it" and answer == "[3]"
    assert parse_think_answer("<think>unfinished") == (None, None)
    assert parse_think_answer("<answer>[2]</answer>") == (None, "[2]")
    assert parse_bracketed_label("[3]", ["1", "2", "3"]) == 2
    assert parse_bracketed_label("none of them", ["1", "2", "3"]) is None


def test_rebel_lines():
    text = "Doc: 2, Relevance: 8.5\nsome chatter\nDoc: 1, Relevance: 3\nDoc: 9, Relevance: 10\nDoc: 2, Relevance: 1"
    assert parse_rebel(text, 3) == {1: 8.5, 0: 3.0}  # out of range dropped, first score of a duplicate kept
    assert parse_rebel("no scores here", 3) == {}


def test_parse_stats_count_malformed():
    stats = ParseStats()
    stats.record(True)
    stats.record(False, "garbage")
    assert (stats.parsed, stats.malformed, stats.examples) == (2, 1, ["garbage"])


def test_parse_rebel_criteria_reads_every_named_score_per_document_line():
    from polyrank.shared.llm.parsers import parse_rebel_criteria

    text = ("Here are the scores:\nDoc: [2], Relevance: 6, Depth: 3.5, Authority: 4\n"
            "Doc: 1, Relevance: 9\nDoc: 2, Relevance: 0\nDoc: 7, Relevance: 10\nDoc 3 is irrelevant")
    # guards: the 1-based doc number used as an index, a later duplicate line overwriting the first, and
    # out-of-range documents (7 of 3) or lines without "Doc:" being accepted
    assert parse_rebel_criteria(text, 3) == {1: {"relevance": 6.0, "depth": 3.5, "authority": 4.0},
                                             0: {"relevance": 9.0}}
    assert parse_rebel_criteria("no scores here", 3) == {}
