"""RankNovo demo: train a tiny model on SIMULATED spectra, rerank SIMULATED candidates for 128 real spectra.

1. Tryptic peptides of Casanovo's sample mouse FASTA -> synthetic b/y spectra + candidates from six noisy
   SIMULATED base models -> a tiny RankNovo trained through the shared trainer (a few CPU minutes at most).
2. The 128 real annotated spectra of Casanovo's sample MGF get candidate sets built from their true
   peptides by the decoy rules (six SIMULATED base models of different accuracy; not real model output).
3. Report Casanovo's metrics for each base model, RankNovo's pick, a zero-shot pick with three base models,
   and the oracle (best candidate) upper bound; plot one spectrum with the b/y ladders of the picked and a
   rejected candidate.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from polyrank.shared.demo import DemoContext
from polyrank.shared.report import Figure, ReportSection, Table, save_figure

logger = logging.getLogger(__name__)

DEMO_ARCH = {"dim_model": 64, "n_head": 4, "dim_feedforward": 128, "n_layers": 2, "dropout": 0.0}
ACCURACIES = {"sim-A": 0.35, "sim-B": 0.45, "sim-C": 0.55, "sim-D": 0.4, "sim-E": 0.5, "sim-F": 0.6}


def _train(ctx: DemoContext, fasta: Path, n_train: int, epochs: int) -> tuple[object, float]:
    from polyrank.domains.ranknovo.module import RankNovoDataModule, RankNovoModule
    from polyrank.shared.trainer import build_trainer

    steps = epochs * (n_train // 32)
    trainer = build_trainer(default_root_dir=ctx.out_dir / "ranknovo_train", max_epochs=epochs,
                            progress_bar="none", loggers=False, enable_checkpointing=False,
                            gradient_clip_val=1.5, seed=ctx.seed,
                            accelerator="cpu" if ctx.device == "cpu" else "auto")
    # the module is built after build_trainer has seeded everything, so the demo is reproducible
    module = RankNovoModule(**DEMO_ARCH, lr=1e-3, warmup_steps=20, max_steps=steps)
    data = RankNovoDataModule(fasta=str(fasta), n_train=n_train, n_val=128, batch_size=32, seed=ctx.seed)
    start = time.perf_counter()
    trainer.fit(module, data)
    hit = float(trainer.callback_metrics.get("val/pick_hit", float("nan")))
    logger.info("demo training took %.1fs, val pick hit %.3f", time.perf_counter() - start, hit)
    return module, hit


def _plot(spectrum, picked: str, rejected: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polyrank.domains.ranknovo.simulate import fragment_ladders
    from polyrank.domains.ranknovo.spectra import preprocess

    peaks = preprocess(spectrum.mz, spectrum.intensity, spectrum.precursor_mz, spectrum.charge)
    top = float(peaks[:, 1].max())
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.vlines(peaks[:, 0], 0, peaks[:, 1] / top, color="0.6", lw=1, label="observed peaks (real spectrum)")
    styles = ((picked, "tab:green", 1.06, "picked"), (rejected, "tab:red", 1.16, "rejected"))
    for peptide, colour, level, label in styles:
        for ion, marker in (("b", "v"), ("y", "^")):
            ladder = fragment_ladders(peptide, 1)[ion]
            hit = np.array([np.any(np.abs(peaks[:, 0] - m) < 0.05) for m in ladder])
            ax.scatter(ladder[hit], np.full(hit.sum(), level), marker=marker, color=colour, s=28,
                       label=f"{label} {peptide} (v b ions, ^ y ions)" if ion == "b" else None)
            ax.scatter(ladder[~hit], np.full((~hit).sum(), level), marker=marker, facecolors="none",
                       edgecolors=colour, s=28)
    ax.set_xlabel("m/z")
    ax.set_ylabel("relative intensity")
    ax.set_ylim(0, 1.25)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(f"{spectrum.title}: b/y ladders (filled = within 0.05 Da of a peak)")
    return save_figure(fig, path)


def _generated_inputs(ctx: DemoContext, n_spectra: int = 128) -> tuple[Path, list]:
    """Without the shared data: GENERATED proteins (residue frequencies of UniProt) written as a FASTA for
    training, and SIMULATED spectra of tryptic peptides of other generated proteins for evaluation."""
    from polyrank.domains.ranknovo.simulate import simulate_spectrum, tryptic_peptides

    residues, weights = "ACDEFGHIKLMNPQRSTVWY", np.array(
        [8.3, 1.4, 5.5, 6.7, 3.9, 7.1, 2.3, 5.9, 5.8, 9.7, 2.4, 4.1, 4.7, 3.9, 5.5, 6.6, 5.4, 6.9, 1.1, 2.9])
    rng = np.random.default_rng(ctx.seed)
    proteins = ["".join(rng.choice(list(residues), size=400, p=weights / weights.sum())) for _ in range(260)]
    fasta = ctx.out_dir / "generated_proteins.fasta"
    fasta.write_text("".join(f">generated_{i}\n{p}\n" for i, p in enumerate(proteins[:200])))
    held_out = [p for p in tryptic_peptides(proteins[200:]) if "C" not in p][:n_spectra]
    spectra = [simulate_spectrum(p, int(rng.integers(2, 4)), rng, title=f"simulated_{i}") for i, p in
               enumerate(held_out)]
    return fasta, [replace(s, peptide=p) for s, p in zip(spectra, held_out)]


def run_demo(ctx: DemoContext) -> ReportSection:
    """The ranknovo section of ``polyrank demo``: the 128 real annotated spectra of Casanovo's sample (the shared
    copy, or the one embedded in ``datasets/casanovo_sample``); GENERATED proteins and SIMULATED spectra only
    where neither exists (an installed wheel without the repository), said in the report."""
    from polyrank.domains.ranknovo.spectra import read_mgf
    from polyrank.shared.embedded import locate
    from polyrank.shared.errors import MissingResourceError

    title = "RankNovo: reranking de novo peptide candidates (ICML 2025)"
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        found = locate("casanovo_sample", ctx.data_dir)
    except MissingResourceError:
        fasta, spectra = _generated_inputs(ctx)
        source = "SIMULATED spectra of GENERATED proteins (no Casanovo sample found)"
    else:
        fasta = found.path / "preprocessed_mouse.fasta"
        spectra = [s for s in read_mgf(found.path / "sample_preprocessed_spectra.mgf").spectra if s.peptide]
        source = f"real spectra (Casanovo sample, {found.describe()})"
    threads = torch.get_num_threads()
    states = (random.getstate(), np.random.get_state())
    torch.set_num_threads(1)  # the demo shares 2 cores with others: one thread avoids oversubscription
    try:
        with torch.random.fork_rng():  # build_trainer seeds everything; the caller's RNG state comes back
            return _run(ctx, fasta, spectra, source, title)
    finally:
        torch.set_num_threads(threads)
        random.setstate(states[0])
        np.random.set_state(states[1])


def _run(ctx: DemoContext, fasta: Path, spectra: list, source: str, title: str) -> ReportSection:
    from polyrank.domains.ranknovo.metrics import peptide_matches
    from polyrank.domains.ranknovo.pipeline import rerank_candidates
    from polyrank.domains.ranknovo.reranker import RankNovoReranker
    from polyrank.domains.ranknovo.simulate import NoisyBaseModel

    start = time.perf_counter()
    # 8 epochs (224 steps), not 4: at 4 the tiny model is a lottery over its random init -- after the layout
    # change needed for the authors' weights (c9e0d07) seed 0 fell to 0.64 peptide recall (< best base 0.70)
    # while seeds 1-4 gave 0.79-0.88; at 8 epochs seeds 0-4 give 0.83-0.92, each >= 0.13 above the best base
    module, val_hit = _train(ctx, fasta, n_train=896, epochs=8)
    train_s = time.perf_counter() - start
    reranker = RankNovoReranker(module.model.cpu(), {**DEMO_ARCH, "mass_table": "reference"}, "ranknovo.tiny")
    reranker.save(ctx.out_dir / "ranknovo_demo_model")

    truths = [s.peptide for s in spectra]
    rng = np.random.default_rng(ctx.seed + 7)
    models = [NoisyBaseModel(name, acc) for name, acc in ACCURACIES.items()]
    rows = [["".join(m.predict(t, rng)) for m in models] for t in truths]
    columns = {m.name: [r[k] for r in rows] for k, m in enumerate(models)}
    # shared flow: a Run of candidates per spectrum -> rerank_run -> picks and metrics (pipeline.py)
    reranked = rerank_candidates(reranker, spectra, columns, truths)
    picks, metrics = reranked.picks, reranked.metrics
    subset = {n: columns[n] for n in list(columns)[3:]}  # unseen number/set of base models
    zero_shot = rerank_candidates(reranker, spectra, subset, truths)
    metrics_zs = zero_shot.metrics

    keys = ("aa_precision", "aa_recall", "peptide_recall")
    table_rows = [[n, f"{ACCURACIES[n]:.2f}", *(getattr(m, k) for k in keys)]
                  for n, m in metrics.items() if n in ACCURACIES]
    for label, m in (("RankNovo (6 models)", metrics["RankNovo"]), ("oracle (6 models)", metrics["oracle"]),
                     ("RankNovo zero-shot (sim-D,E,F)", metrics_zs["RankNovo"]),
                     ("oracle (sim-D,E,F)", metrics_zs["oracle"])):
        table_rows.append([label, "-", *(getattr(m, k) for k in keys)])
    figures = []
    hits = peptide_matches(picks, truths)
    for i, pick in enumerate(picks):
        wrong = [c for c in rows[i] if not peptide_matches([c], [truths[i]])[0]]
        if hits[i] and wrong:
            path = _plot(spectra[i], pick, wrong[0], ctx.out_dir / "ranknovo_ladders.png")
            figures.append(Figure("b/y ladders of the picked vs a rejected candidate", path,
                                  f"Spectrum {spectra[i].title} (true {truths[i]}) from {source}; "
                                  "candidates are SIMULATED."))
            break
    best_base = max(m.peptide_recall for n, m in metrics.items() if n in ACCURACIES)
    summary = (f"Tiny RankNovo trained {train_s:.0f}s on SIMULATED spectra (val pick hit {val_hit:.2f}); "
               f"reranking SIMULATED candidates of {len(spectra)} {source}: peptide recall "
               f"{metrics['RankNovo'].peptide_recall:.3f} vs best base model {best_base:.3f} and oracle "
               f"{metrics['oracle'].peptide_recall:.3f}; P@1 over spectra with a correct candidate "
               f"{reranked.hit_at_1 or 0.0:.3f}.")
    note = ("Base models are SIMULATED (truth with the given probability, else isobaric / transposition / "
            f"substitution decoys); spectra: {source}. Metrics: Casanovo's prefix/suffix "
            "matching, 0.5/0.1 Da.")
    return ReportSection(title, summary, [Table(f"Base models vs RankNovo vs oracle ({len(spectra)} spectra)",
                                                ["model", "sim. accuracy", "AA precision", "AA recall",
                                                 "peptide recall"], table_rows, note, digits=3)], figures,
                         [f"training + reranking wall time {time.perf_counter() - start:.0f}s"])
