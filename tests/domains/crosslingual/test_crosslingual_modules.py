"""Adapter Stack/Split wiring, LT-SFT training phases, module files and their errors, on a tiny random BERT."""

from __future__ import annotations

import warnings

import pytest
import torch

from polyrank.domains.crosslingual import model as M
from polyrank.domains.crosslingual.module import TINY_PAIRS, LanguageModule, RankingModule
from polyrank.shared.errors import PolyrankError

QUERIES = ["boiling point of water", "siedepunkt von wasser"]
DOCS = ["water boils at 100 degrees celsius at sea level", "wasser siedet bei 100 grad celsius"]


def _perturbed_language_module(lang: str, scale: float, seed: int) -> M.ModuleFile:
    """An untrained language adapter with clearly non-zero weights (adapters start near identity)."""
    module = LanguageModule(language=lang, base="tiny", seed=0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in M.adapter_keys(module.model, module.adapter):
            p = dict(module.model.named_parameters())[name]
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module.export()


@pytest.fixture(scope="module")
def language_modules():
    return {"en": _perturbed_language_module("en", 0.5, 1), "de": _perturbed_language_module("de", 0.5, 2)}


def _train_steps(module: RankingModule, steps: int = 3) -> None:
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        module.training_step(list(TINY_PAIRS), 0).backward()
        opt.step()


def test_ranking_adapter_trains_only_the_adapter_and_head_over_a_frozen_language_adapter(tmp_path, language_modules):
    language_modules["en"].save(tmp_path / "la_en")
    module = RankingModule(kind="adapter", base="tiny", language_module=str(tmp_path / "la_en"), seed=0)
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapters.ra." in n or n.startswith("classifier.") for n in trainable), trainable
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    _train_steps(module)
    after = module.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".adapters.ra." in k or k.startswith("classifier.") for k in changed), changed
    assert any(".adapters.ra." in k for k in changed)  # the ranking adapter itself learned
    assert module.trainable_parameters() < 0.2 * sum(p.numel() for p in module.model.parameters())


def test_swapping_the_language_adapter_changes_scores_and_leaves_the_ranking_adapter_untouched(tmp_path,
                                                                                                language_modules):
    language_modules["en"].save(tmp_path / "la_en")
    module = RankingModule(kind="adapter", base="tiny", language_module=str(tmp_path / "la_en"), seed=0)
    _train_steps(module)
    ranking = module.export()
    ra_before = {k: v.clone() for k, v in ranking.tensors.items()}
    scores = {}
    for lang in ("en", "de"):
        r = M.build_reranker("t", "tiny", ranking, {lang: language_modules[lang]}, M.Setup(lang, lang))
        scores[lang] = r.score_pairs(QUERIES, DOCS)
        state = r.model.state_dict()
        for k, v in ra_before.items():  # the ranking adapter inside the composed model is exactly the trained one
            assert torch.equal(state[k.replace(M.PLACEHOLDER, "ra")], v)
    assert abs(scores["en"] - scores["de"]).max() > 1e-4
    # Stack(LA_en, RA) with the invertible adapter kept (as in training) reproduces the module's own predictions;
    # the default drops it at inference (the paper's delete_invertible_adapter), which changes the scores
    with torch.no_grad():
        own = module.eval()(QUERIES, DOCS).numpy()
    keep = M.build_reranker("t", "tiny", ranking, {"en": language_modules["en"]}, M.Setup("en", "en",
                                                                                                  invertible="keep"))
    assert abs(own - keep.score_pairs(QUERIES, DOCS)).max() < 1e-5
    assert abs(own - scores["en"]).max() > 1e-5
    assert all(torch.equal(ranking.tensors[k], v) for k, v in ra_before.items())


def test_split_routes_query_and_document_through_different_language_adapters(language_modules):
    module = RankingModule(kind="adapter", base="tiny", seed=0)
    ranking = module.export()
    langs = dict(language_modules)
    split = M.build_reranker("t", "tiny", ranking, langs, M.Setup("en", "de", split=True))
    stack_de = M.build_reranker("t", "tiny", ranking, {"de": langs["de"]}, M.Setup("de", "de"))
    stack_en = M.build_reranker("t", "tiny", ranking, {"en": langs["en"]}, M.Setup("en", "en"))
    s, d, e = (r.score_pairs(QUERIES, DOCS) for r in (split, stack_de, stack_en))
    assert abs(s - d).max() > 1e-5 and abs(s - e).max() > 1e-5
    # Split with the same adapter on both sides is exactly Stack(LA, RA): the split point only routes tokens
    same = M.build_reranker("t", "tiny", ranking, {"de": langs["de"]}, M.Setup("de", "de", split=True))
    assert abs(same.score_pairs(QUERIES, DOCS) - d).max() < 1e-5
    # batching pairs with different query lengths together gives the same scores as one pair at a time
    alone = [split.score_pairs([q], [doc])[0] for q, doc in zip(QUERIES, DOCS)]
    assert abs(split.score_pairs(QUERIES, DOCS) - alone).max() < 1e-5


def test_invertible_adapter_is_dropped_by_default_and_kept_on_request(language_modules):
    ranking = RankingModule(kind="adapter", base="tiny", seed=0).export()
    drop = M.build_reranker("t", "tiny", ranking, {"en": language_modules["en"]}, M.Setup("en", "en"))
    keep = M.build_reranker("t", "tiny", ranking, {"en": language_modules["en"]}, M.Setup("en", "en",
                                                                                                  invertible="keep"))
    assert not len(drop.model.bert.invertible_adapters) and len(keep.model.bert.invertible_adapters) == 1
    assert abs(drop.score_pairs(QUERIES, DOCS) - keep.score_pairs(QUERIES, DOCS)).max() > 1e-6


def test_lt_sft_ranking_module_moves_exactly_k_entries_from_theta0(tmp_path):
    # guards the LT-SFT steps: without the reset (step 3) or the gradient masks (step 4), entries outside the
    # top-K would keep their full fine-tuning values and the diff would have more than K moved entries
    from polyrank.shared.trainer import build_trainer
    from polyrank.domains.crosslingual.module import RankingDataModule

    module = RankingModule(kind="sft", base="tiny", k=300, full_steps=2, lr=0.01, warmup_ratio=0.0, seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        build_trainer(default_root_dir=tmp_path, max_epochs=None, max_steps=5, progress_bar="none",
                      loggers=False, enable_checkpointing=False, seed=None, accelerator="cpu").fit(
            module, datamodule=RankingDataModule(batch_size=4))
    diff = module.sparse_diff()
    params = dict(module.model.named_parameters())
    moved = sum(int((params[n].detach() != module.theta0[n]).sum()) for n in module.maskable)
    assert 0 < moved <= 300 and diff.n_entries == 300
    for n in module.maskable:
        assert torch.equal(params[n].detach()[~module.masks[n]], module.theta0[n][~module.masks[n]]), n
    # the exported module composed on a fresh tiny base scores like the trained model
    r = M.build_reranker("t", "tiny", module.export(), {}, M.Setup())
    with torch.no_grad():
        assert abs(module.eval()(QUERIES, DOCS).numpy() - r.score_pairs(QUERIES, DOCS)).max() < 1e-5


def test_lt_sft_restarts_the_learning_rate_schedule_at_its_sparse_phase(tmp_path):
    # guards: one linear decay over both phases left the sparse phase, where the kept entries are trained from
    # theta0, at half the rate and falling; composable-sft builds a new optimizer and scheduler for each phase
    import lightning as L

    from polyrank.domains.crosslingual.module import RankingDataModule, linear_phases
    from polyrank.shared.trainer import build_trainer

    class Rates(L.Callback):
        def __init__(self):
            self.rates, self.heads = [], []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):  # the rate this step applies
            self.rates.append(optimizer.param_groups[0]["lr"])
            self.heads.append({g["lr"] for g in optimizer.param_groups if g.get("head")})

    rates = Rates()
    module = RankingModule(kind="sft", base="tiny", k=300, full_steps=3, lr=0.01, warmup_ratio=0.0, seed=0)
    build_trainer(default_root_dir=tmp_path, max_epochs=None, max_steps=7, progress_bar="none", loggers=False,
                  enable_checkpointing=False, seed=None, accelerator="cpu", callbacks=[rates]).fit(
        module, datamodule=RankingDataModule(batch_size=4))
    assert [round(r / 0.01, 6) for r in rates.rates] == [1, 0.666667, 0.333333, 1, 0.75, 0.5, 0.25]
    # sparse_lr: the encoder's rate in the sparse phase only; the relevance head keeps head_lr throughout
    rates = Rates()
    module = RankingModule(kind="sft", base="tiny", k=300, full_steps=2, lr=0.01, sparse_lr=0.1, head_lr=0.5,
                           warmup_ratio=0.0, seed=0)
    build_trainer(default_root_dir=tmp_path / "s", max_epochs=None, max_steps=4, progress_bar="none", loggers=False,
                  enable_checkpointing=False, seed=None, accelerator="cpu", callbacks=[rates]).fit(
        module, datamodule=RankingDataModule(batch_size=4))
    assert [round(r, 6) for r in rates.rates] == [0.01, 0.005, 0.1, 0.05]
    assert rates.heads == [{0.5}, {0.25}, {0.5}, {0.25}]
    warm = linear_phases([10], 0.2)  # one phase: transformers' linear schedule with warm-up
    assert [warm(s) for s in (0, 1, 2, 6, 10, 11)] == [0, 0.5, 1, 0.5, 0, 0]


def test_language_module_head_warmup_trains_only_the_mlm_head_first(tmp_path):
    # guards: during head_warmup_steps the language adapter must stay at its start (e5 ships no MLM head, so its
    # first updates would serve a random decoder) and the head must learn; afterwards the adapter trains too
    from polyrank.domains.crosslingual.module import TextFolderDataModule
    from polyrank.shared.trainer import build_trainer

    module = LanguageModule(language="en", base="tiny", lr=0.01, seed=0, head_warmup_steps=3)
    adapter = {n: p.detach().clone() for n, p in module.model.named_parameters() if p.requires_grad}
    head = module.mlm_head.dense.weight.detach().clone()

    def fit(steps: int, root) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_trainer(default_root_dir=root, max_epochs=None, max_steps=steps, progress_bar="none",
                          loggers=False, enable_checkpointing=False, seed=None, accelerator="cpu").fit(
                module, datamodule=TextFolderDataModule(batch_size=4))

    fit(3, tmp_path / "a")
    assert adapter and all(torch.equal(p.detach(), adapter[n]) for n, p in module.model.named_parameters()
                           if n in adapter)
    assert not torch.equal(module.mlm_head.dense.weight.detach(), head)
    module.hparams.head_warmup_steps = 0  # go on past the warm-up (a fresh trainer restarts global_step)
    fit(2, tmp_path / "b")
    assert any(not torch.equal(p.detach(), adapter[n]) for n, p in module.model.named_parameters() if n in adapter)


def test_learning_sanity_on_a_tiny_bilingual_set():
    # full fine-tuning of the tiny model separates positives from negatives in both languages within a few steps
    module = RankingModule(kind="full", base="tiny", lr=1e-3, seed=0)
    losses = []
    opt = torch.optim.AdamW(module.parameters(), lr=5e-3)
    for _ in range(12):
        opt.zero_grad()
        loss = module.training_step(list(TINY_PAIRS), 0)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        scores = module.eval()([q for q, _, _ in TINY_PAIRS], [d for _, d, _ in TINY_PAIRS]).numpy()
    for i in range(0, len(TINY_PAIRS), 2):  # each query: its positive above its negative (English and German)
        assert scores[i] > scores[i + 1], TINY_PAIRS[i]


def test_unknown_language_code_is_a_clear_error():
    with pytest.raises(PolyrankError, match="unknown language code 'xx'"):
        M.language_code("xx")
    with pytest.raises(PolyrankError, match="unknown language code"):
        LanguageModule(language="english", base="tiny")
    assert M.language_code("RUS") == "ru" and M.language_code("zho") == "zh"


def test_module_from_another_base_or_vocabulary_is_a_clear_error(tmp_path):
    ranking = RankingModule(kind="adapter", base="tiny", seed=0).export()
    other_base = M.build_base("tiny", seed=1)  # same architecture, other weights
    with pytest.raises(PolyrankError, match="trained on another base model"):
        ranking.check_base(other_base)
    with pytest.raises(PolyrankError, match="trained on another base model"):
        M.build_reranker("t", "tiny", ranking, {}, M.Setup(), seed=1)
    ranking.meta["vocab"] = "0000000000000000"
    with pytest.raises(PolyrankError, match="another vocabulary"):
        M.build_reranker("t", "tiny", ranking, {}, M.Setup())


def test_mismatched_tokenizer_vocabulary_is_refused_by_the_converter():
    from polyrank.domains.crosslingual.e5 import check_vocabulary
    from polyrank.shared.text_encoder import minilm_path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path())
    pieces = [p for p, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    check_vocabulary(tok, pieces, "same")
    pieces[1000], pieces[1001] = pieces[1001], pieces[1000]
    with pytest.raises(PolyrankError, match="does not match the vocabulary"):
        check_vocabulary(tok, pieces, "swapped")


def test_module_files_round_trip_and_load_composes_them(tmp_path, language_modules):
    from polyrank.domains.crosslingual import load
    from polyrank.shared.registry import UntrainedWeightsWarning

    ranking = RankingModule(kind="adapter", base="tiny", seed=0).export()
    ranking.save(tmp_path / "ra")
    language_modules["de"].save(tmp_path / "la_de")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        r = load("tiny", language_module=str(tmp_path / "la_de"), ranking_module=str(tmp_path / "ra"))
    direct = M.build_reranker("t", "tiny", ranking, {"de": language_modules["de"]}, M.Setup("de", "de"))
    assert abs(r.score_pairs(QUERIES, DOCS) - direct.score_pairs(QUERIES, DOCS)).max() < 1e-6
    r.save(tmp_path / "saved")
    again = load(tmp_path / "saved")
    assert (again.score_pairs(QUERIES, DOCS) == r.score_pairs(QUERIES, DOCS)).all()
    with pytest.raises(PolyrankError, match="not a crosslingual module"):
        M.ModuleFile.load(tmp_path)


def test_length_sorted_batches_return_scores_in_input_order_and_rerank_run_keeps_the_tail():
    # guards the un-sorting of length-sorted batches: a score written to the sorted position instead of the input's
    # would give each pair another pair's score
    from polyrank.shared.protocol import rerank_run

    ranking = RankingModule(kind="full", base="tiny", seed=0).export()
    r = M.build_reranker("t", "tiny", ranking, {}, M.Setup(), batch_size=2)
    queries = [q for q, _, _ in TINY_PAIRS]
    docs = [d + " extra words" * i for i, (_, d, _) in enumerate(TINY_PAIRS)]
    one_by_one = [r.score_pairs([q], [d])[0] for q, d in zip(queries, docs)]
    assert abs(r.score_pairs(queries, docs) - one_by_one).max() < 1e-5
    corpus = {f"d{i}": d for i, d in enumerate(docs)}
    first = {"q": {f"d{i}": 10.0 - i for i in range(len(docs))}}
    out = rerank_run(first, r, {"q": queries[0]}, corpus, depth=3)
    order = sorted(out["q"], key=lambda d: -out["q"][d])
    assert sorted(order[:3]) == ["d0", "d1", "d2"] and order[3:] == [f"d{i}" for i in range(3, len(docs))]


def test_lt_sft_resumed_in_its_sparse_phase_goes_on_from_its_checkpoint(tmp_path):
    # guards: a run stopped after the top-K switch and resumed from last.ckpt must keep its masks, its sparse-phase
    # weights and its sparse_lr; selecting again on resume reset every weight to theta0 and lost the sparse steps
    # already taken. Oracle: one resumed step equals the uninterrupted run's same step (both schedules planned for
    # max_steps=6, stopped by a callback, as a kill would stop them)
    import lightning as L

    from polyrank.domains.crosslingual.module import RankingDataModule
    from polyrank.shared.trainer import build_trainer

    class StopAt(L.Callback):
        def __init__(self, step):
            self.step = step

        def on_train_batch_end(self, trainer, *args):
            trainer.should_stop = trainer.global_step >= self.step

    def fit(root, stop, ckpt_path=None, seed=0):
        module = RankingModule(kind="sft", base="tiny", k=300, full_steps=2, lr=0.01, sparse_lr=0.05,
                               warmup_ratio=0.0, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_trainer(default_root_dir=root, max_epochs=None, max_steps=6, progress_bar="none", loggers=False,
                          accelerator="cpu", callbacks=[StopAt(stop)]).fit(
                module, datamodule=RankingDataModule(batch_size=4), ckpt_path=ckpt_path)
        return module

    whole = fit(tmp_path / "whole", 5)
    fit(tmp_path / "cut", 4)  # two steps into the sparse phase, at an epoch end (last.ckpt)
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 4 and "lt_sft" in state
    resumed = fit(tmp_path / "cut", 5, ckpt_path="last")
    assert all(torch.equal(resumed.masks[n], whole.masks[n]) for n in whole.masks)
    expected = dict(whole.model.named_parameters())
    for n, p in resumed.model.named_parameters():
        assert torch.equal(p, expected[n]), n
    assert resumed.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 * 1 / 4)
    assert resumed.sparse_diff().n_entries == whole.sparse_diff().n_entries
    with pytest.raises(PolyrankError, match="other start weights"):  # another seed: another tiny theta0
        fit(tmp_path / "cut", 5, ckpt_path="last", seed=1)
