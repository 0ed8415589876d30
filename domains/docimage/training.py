"""Training the page rerankers on VLMs with LoRA, through :mod:`polyrank.shared.rl`.

- :class:`MMR5SFTModule`: MM-R5 stage 1 (arXiv 2506.12364, Sec. 3.2): supervised fine-tuning on reasoning-annotated
  rankings, target ``<think>{analysis}</think><answer>[positives first, then negatives, each ascending]</answer>``,
  loss = mean NLL of the target tokens (the prompt and its images are context only).
- :class:`MMR5GRPOModule`: MM-R5 stage 2 (Sec. 3.3): GRPO with reward = ranking reward + format reward
  (:mod:`.rewards`); G completions per prompt, group-normalised advantages
  (:func:`polyrank.shared.rl.grpo.group_advantages`), the clipped objective with beta * k3-KL to the reference =
  the same model with adapters disabled (:func:`polyrank.shared.rl.grpo.grpo_loss`).
- :class:`RagLLaVAModule`: RagLLaVA's reranker instruction tuning (arXiv 2407.21439, Sec. 3.2): one page, target
  "Yes"/"No"; ``noise_injection`` adds the paper's token-level noise-injected loss re-weighting (Sec. 3.3, VCD
  diffusion noise at t=500 on the preprocessed image; weight ``clamp(logit_clean - logit_noisy, 1, 5)`` of the
  target token -- the released code takes vocabulary column 0 instead, which we read as a bug).

Only LoRA adapter weights train (the vision tower and the base LM are frozen); checkpoints hold only adapters
(:class:`~polyrank.shared.rl.lora.LoraCheckpointMixin`), and the hyper-parameters ``model`` / ``lora`` /
``serve_as`` let :func:`lm_from_recipe_checkpoint` rebuild the served model (base + merged adapters).
The RL helper's :class:`polyrank.shared.rl.grpo.GRPOModule` is text-only (token ids, 1-D positions), so the VLM
step here reuses its pure functions and adds pixel inputs and Qwen2-VL's M-RoPE positions
(:func:`polyrank.shared.llm.vision.completion_logprobs`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from polyrank.domains.docimage.mmr5 import prompt_input, target_text
from polyrank.domains.docimage.pages import Page
from polyrank.domains.docimage.rewards import format_reward, ranking_reward
from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.vision import VisionInput, VisionLM, completion_logprobs, generate
from polyrank.shared.rl.grpo import grpo_loss, group_advantages
from polyrank.shared.rl.lora import LoraCheckpointMixin, adapters_disabled, add_lora
from polyrank.shared.rl.lora import lora_settings as shared_lora_settings

#: LoRA on the language model's linear layers only (MM-R5 and RagLLaVA keep the vision tower frozen)
LANGUAGE_LORA = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
DEFAULT_LORA = {"r": 8, "alpha": 32, "dropout": 0.0, "target_modules": LANGUAGE_LORA}
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (240, 220, 30),
           "black": (10, 10, 10), "white": (250, 250, 250), "purple": (140, 40, 160), "orange": (250, 140, 20)}


def lora_settings(lora: dict[str, Any] | None) -> dict[str, Any]:
    """``lora`` completed with the VLM defaults :data:`DEFAULT_LORA` (unknown keys are an error)."""
    return shared_lora_settings(lora, defaults=DEFAULT_LORA)


def base_vlm(model: str, device: str | None = None) -> VisionLM:
    """``"tiny:<family>"`` (a tiny random VLM of :mod:`polyrank.shared.llm.tiny_vlm`, seed 0, whose tokenizer keeps
    the prompt words whole, as ``docimage.*.tiny`` builds it) or a local VLM folder."""
    if model.startswith("tiny:"):
        from polyrank.domains.docimage.mmr5 import prompt_words
        from polyrank.shared.llm.tiny_vlm import tiny_vlm

        return tiny_vlm(model.split(":", 1)[1], words=prompt_words(), device=device)
    from polyrank.shared.llm.vision import load_vlm

    return load_vlm(model, device=device, dtype=torch.float32 if device in (None, "cpu") else None)


def with_lora(vlm: VisionLM, lora: dict[str, Any], seed: int) -> VisionLM:
    model = add_lora(vlm.model, r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"],
                     target_modules=lora["target_modules"], seed=seed)
    return VisionLM(model, vlm.processor, vlm.source)


@dataclass
class RankExample:
    """A question, its candidate pages (shown as ``Image 1..n``), the 1-based positives and an analysis text."""

    query: str
    pages: list[Page]
    positives: list[int]
    think: str = ""

    def order(self) -> list[int]:
        """MM-R5's SFT answer order: positives first, then negatives, each ascending."""
        return sorted(range(1, len(self.pages) + 1), key=lambda i: (i not in self.positives, i))


def synthetic_examples(n: int, n_pages: int = 3, seed: int = 0, size: int = 56) -> list[RankExample]:
    """Colour-matching rankings: "Which page is <colour>?" over plain-colour pages with a little noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    out = []
    for k in range(n):
        chosen = [names[i] for i in rng.choice(len(names), n_pages, replace=False)]
        target = int(rng.integers(n_pages))
        pages = []
        for i, name in enumerate(chosen):
            pixels = np.clip(np.array(COLOURS[name], float) + rng.normal(0, 12, (size, size, 3)), 0, 255)
            pages.append(Page(f"synthetic{k}", i, Image.fromarray(pixels.astype(np.uint8)), f"a {name} page"))
        out.append(RankExample(f"Which page is {chosen[target]}?", pages, [target + 1],
                               f"Image {target + 1} is {chosen[target]}; the others are not."))
    return out


def mmdocir_examples(data_dir: str | Path, n_pages: int = 3, seed: int = 0, max_examples: int | None = None
                     ) -> list[RankExample]:
    """Rankings from the real MMDocIR questions of the parsed documents (page text drawn as page images):
    each question's positives plus random other pages of its document, shuffled."""
    from polyrank.domains.docimage.data import parsed_subset

    docs, store = parsed_subset(data_dir)
    rng = random.Random(seed)
    out = []
    for doc in docs:
        pages = store.pages(doc.name)
        for q in doc.questions:
            positives = [p for p in pages if p.index in q.pages][: n_pages - 1]
            others = [p for p in pages if p.index not in q.pages]
            window = positives + rng.sample(others, min(len(others), n_pages - len(positives)))
            rng.shuffle(window)
            ids = [i + 1 for i, p in enumerate(window) if p.index in q.pages]
            think = f"Image {ids[0]} holds the evidence for the question; the others do not."
            out.append(RankExample(q.text, window, ids, think))
    rng.shuffle(out)
    return out[:max_examples] if max_examples else out


class RankDataModule(L.LightningDataModule):
    """Ranking examples for the docimage recipes.

    Args:
        source: "synthetic" (colour-matching pages, seconds on CPU) or "mmdocir" (the parsed MMDocIR documents
            under data_dir, page text drawn as page images).
        data_dir: the shared data folder (holding docimage/mmdocir); None: polyrank.shared.reproduce.data_dir().
        n_examples: examples (synthetic) or the most examples (mmdocir).
        n_pages: candidate pages per example.
        batch_size: examples per optimiser step.
        seed: seeds example generation and sampling order.
    """

    def __init__(self, source: str = "synthetic", data_dir: str | None = None, n_examples: int = 8, n_pages: int = 3,
                 batch_size: int = 2, seed: int = 0) -> None:
        super().__init__()
        if source not in ("synthetic", "mmdocir"):
            raise PolyrankError(f"source must be 'synthetic' or 'mmdocir', got {source!r}")
        self.source, self.data_dir, self.n_examples, self.n_pages = source, data_dir, n_examples, n_pages
        self.batch_size, self.seed = batch_size, seed
        self.examples: list[RankExample] = []

    def setup(self, stage: str | None = None) -> None:
        if self.examples:
            return
        if self.source == "synthetic":
            self.examples = synthetic_examples(self.n_examples, self.n_pages, self.seed)
        else:
            from polyrank.shared.reproduce import data_dir

            root = Path(self.data_dir) if self.data_dir else data_dir()
            if root is None:
                raise PolyrankError("source='mmdocir' needs the shared data folder; set POLYRANK_DATA_DIR or "
                                    "--data.init_args.data_dir")
            self.examples = mmdocir_examples(root, self.n_pages, self.seed, self.n_examples)

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.DataLoader(self.examples, batch_size=self.batch_size, shuffle=True,
                                           collate_fn=list, generator=generator)


class _LoraVLMModule(LoraCheckpointMixin, L.LightningModule):
    """Shared: base VLM + LoRA (``self.model`` is the peft model), AdamW on the adapters."""

    serve_family = ""

    def _setup_model(self, model: str, lora: dict[str, Any] | None, seed: int) -> None:
        settings = lora_settings(lora)
        self.vlm = with_lora(base_vlm(model), settings, seed)
        self.model = self.vlm.model

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=0.0)

    def eos(self) -> int:
        return int(self.vlm.tokenizer.eos_token_id)


class MMR5SFTModule(_LoraVLMModule):
    """MM-R5 stage 1: LoRA SFT of the listwise reasoning output (module docstring).

    Args:
        model: base VLM: "tiny:qwen2_vl"/"tiny:llava" (tiny random test model) or a local VLM folder.
        lora: LoRA settings (keys r, alpha, dropout, target_modules; default r=8, alpha=32, language-model linears).
        serve_as: registry name that serves the trained weights ("docimage.mmr5" or "docimage.mmr5.tiny").
        reasoning: train the <think>...</think> part (False: the answer list only).
        lr: AdamW learning rate of the adapters (the authors: 1e-4).
        seed: seeds the LoRA initialisation.
    """

    def __init__(self, model: str = "tiny:qwen2_vl", lora: dict[str, Any] | None = None,
                 serve_as: str = "docimage.mmr5.tiny", reasoning: bool = True, lr: float = 1e-4, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._setup_model(model, lora, seed)

    def batch_inputs(self, batch: list[RankExample]) -> tuple[list[VisionInput], list[list[int]]]:
        prompts = [prompt_input(self.vlm, ex.query, ex.pages, self.hparams.reasoning) for ex in batch]
        targets = [self.vlm.encode(target_text(ex.order(), self.hparams.reasoning, ex.think)) + [self.eos()]
                   for ex in batch]
        return prompts, targets

    def loss(self, batch: list[RankExample]) -> torch.Tensor:
        prompts, targets = self.batch_inputs(batch)
        logprobs, mask = completion_logprobs(self.vlm, prompts, targets)
        return -(logprobs.sum() / mask.sum())

    def training_step(self, batch: list[RankExample], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss

    @torch.no_grad()
    def first_token_scores(self, query: str, pages: list[Page]) -> np.ndarray:
        """The served reranker's ``mode="first_token"`` scores, from this module's own (unmerged) model."""
        from polyrank.domains.docimage.mmr5 import MMR5Reranker

        return MMR5Reranker(self.vlm, "docimage.mmr5", reasoning=self.hparams.reasoning, mode="first_token",
                            max_candidates=len(pages))._first_token_scores(query, pages)


class MMR5GRPOModule(_LoraVLMModule):
    """MM-R5 stage 2: GRPO with the ranking + format rewards (module docstring); manual optimisation.

    Args:
        model: base VLM: "tiny:qwen2_vl"/"tiny:llava" or a local VLM folder (the SFT-merged model in practice).
        lora: LoRA settings (the authors: r=64, alpha=128 for RL).
        serve_as: registry name that serves the trained weights.
        reasoning: the template includes <think>...</think>.
        group_size: G completions sampled per prompt (the authors: 4).
        max_new_tokens: the most tokens of a completion.
        temperature: sampling temperature (the authors' trainer: 1.0).
        num_iterations: optimiser steps per sampled batch (the authors: 2).
        epsilon: ratio clip (0.2).
        beta: weight of the k3 KL to the adapter-free reference (0.04).
        lr: AdamW learning rate (the authors: 1e-5).
        seed: seeds the LoRA initialisation and every sampling call (with the step number).
    """

    def __init__(self, model: str = "tiny:qwen2_vl", lora: dict[str, Any] | None = None,
                 serve_as: str = "docimage.mmr5.tiny", reasoning: bool = True, group_size: int = 4,
                 max_new_tokens: int = 16, temperature: float = 1.0, num_iterations: int = 1, epsilon: float = 0.2,
                 beta: float = 0.04, lr: float = 1e-5, seed: int = 0) -> None:
        if group_size < 2:
            raise PolyrankError(f"group_size must be >= 2 (advantages are relative to the group), got {group_size}")
        super().__init__()
        self.save_hyperparameters()
        self._setup_model(model, lora, seed)
        self.automatic_optimization = False
        self.history: list[dict[str, float]] = []
        self._local_steps = 0
        #: ``(prompts, seed) -> completion token ids``; tests inject hand-written completions through it
        self.sampler = self.sample

    def sample(self, rows: list[VisionInput], seed: int) -> list[list[int]]:
        """G sampled completions per prompt row (seeded; the global RNG is untouched)."""
        hp = self.hparams
        return generate(self.vlm, rows, hp.max_new_tokens, do_sample=True, temperature=hp.temperature, seed=seed)

    first_token_scores = MMR5SFTModule.first_token_scores

    def rewards(self, batch: list[RankExample], texts: list[list[str]]) -> torch.Tensor:
        return torch.tensor([[ranking_reward(t, ex.positives) + format_reward(t, len(ex.pages), self.hparams.reasoning)
                              for t in group] for ex, group in zip(batch, texts)], dtype=torch.float32)

    def grpo_step(self, batch: list[RankExample], optimizer: Any) -> dict[str, float]:
        """Sample G completions per prompt, reward them, take ``num_iterations`` optimiser steps."""
        hp = self.hparams
        prompts = [prompt_input(self.vlm, ex.query, ex.pages, hp.reasoning) for ex in batch]
        rows = [p for p in prompts for _ in range(hp.group_size)]
        step = self.global_step if self._trainer is not None else self._local_steps
        was_training = self.model.training
        self.model.eval()
        completions = self.sampler(rows, hp.seed * 1_000_003 + step)
        texts = [self.vlm.tokenizer.decode(c, skip_special_tokens=False) for c in completions]
        completions = [c + [self.eos()] if len(c) < hp.max_new_tokens else c for c in completions]  # ended ones
        grouped = [texts[b * hp.group_size:(b + 1) * hp.group_size] for b in range(len(batch))]
        rewards = self.rewards(batch, grouped)
        advantages = group_advantages(rewards).reshape(-1).to(self.vlm.device)
        with torch.no_grad():
            old, mask = completion_logprobs(self.vlm, rows, completions, grad=False)
            ref = None
            if hp.beta != 0.0:
                with adapters_disabled(self.model):
                    ref, _ = completion_logprobs(self.vlm, rows, completions, grad=False)
        self.model.train(was_training)
        for _ in range(hp.num_iterations):
            logprobs, _ = completion_logprobs(self.vlm, rows, completions)
            loss, stats = grpo_loss(logprobs, old, advantages, mask, ref, epsilon=hp.epsilon, beta=hp.beta)
            optimizer.zero_grad()
            if self._trainer is not None:
                self.manual_backward(loss)
            else:
                loss.backward()
            optimizer.step()
        self._local_steps += 1
        stats = {"loss": float(loss.detach()), **stats, "reward": float(rewards.mean()),
                 "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0}
        self.history.append(stats)
        return stats

    def training_step(self, batch: list[RankExample], batch_idx: int) -> None:
        stats = self.grpo_step(batch, self.optimizers())
        for key, value in stats.items():
            self.log(f"train/{key}", value, batch_size=len(batch))


def add_diffusion_noise(pixels: torch.Tensor, step: int = 500, generator: torch.Generator | None = None
                        ) -> torch.Tensor:
    """VCD's forward diffusion at ``step`` (RagLLaVA Sec. 3.3): beta_t = sigmoid(linspace(-6, 6, 1000)) *
    (5e-3 - 1e-5) + 1e-5, alpha_bar = cumprod(1 - beta); x_t = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) eps."""
    betas = torch.sigmoid(torch.linspace(-6, 6, 1000, dtype=torch.float64)) * (5e-3 - 1e-5) + 1e-5
    alpha_bar = torch.cumprod(1 - betas, 0)[step].item()
    noise = torch.randn(pixels.shape, generator=generator, dtype=torch.float32).to(pixels)
    return pixels * alpha_bar ** 0.5 + noise * (1 - alpha_bar) ** 0.5


def noise_weights(clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """Token weights ``clamp(logit_clean - logit_noisy, 1, 5)`` of the target tokens (RagLLaVA Sec. 3.3)."""
    return (clean - noisy).clamp(1.0, 5.0)


class RagLLaVAModule(_LoraVLMModule):
    """RagLLaVA reranker tuning: each candidate page of an example becomes one yes/no instruction (positives
    "Yes", others "No"); optional noise-injected loss re-weighting (module docstring).

    Args:
        model: base VLM: "tiny:qwen2_vl"/"tiny:llava" or a local VLM folder.
        lora: LoRA settings (the authors: r=128, alpha=256).
        serve_as: registry name that serves the trained weights ("docimage.ragllava" or "docimage.ragllava.tiny").
        prompt: "plain" or "caption" (page text as the caption).
        noise_injection: weight each target token's loss by clamp(logit_clean - logit_noisy, 1, 5).
        noise_step: the diffusion step t of the noised image (500).
        lr: AdamW learning rate (the authors: 2e-4).
        seed: seeds the LoRA initialisation and the image noise.
    """

    def __init__(self, model: str = "tiny:qwen2_vl", lora: dict[str, Any] | None = None,
                 serve_as: str = "docimage.ragllava.tiny", prompt: str = "plain", noise_injection: bool = False,
                 noise_step: int = 500, lr: float = 2e-4, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._setup_model(model, lora, seed)
        self._generator = torch.Generator().manual_seed(seed)

    def reranker(self):
        from polyrank.domains.docimage.ragllava import RagLLaVAReranker

        return RagLLaVAReranker(self.vlm, "docimage.ragllava", prompt=self.hparams.prompt, reuse_prefix=False)

    def loss(self, batch: list[RankExample]) -> torch.Tensor:
        from polyrank.shared.llm.vision import SENTINEL

        reranker = self.reranker()
        yes, no = reranker.label_ids
        prompts, targets = [], []
        for ex in batch:
            for i, page in enumerate(ex.pages, 1):
                before, after = self.vlm.split(reranker._messages(ex.query, page.text, SENTINEL))
                prompt = self.vlm.inputs(after, [page.image])
                prompts.append(VisionInput(self.vlm.encode(before) + prompt.ids, prompt.visual))
                targets.append([yes if i in ex.positives else no])
        if not self.hparams.noise_injection:
            logprobs, mask = completion_logprobs(self.vlm, prompts, targets)
            return -(logprobs.sum() / mask.sum())
        logprobs, mask, clean = completion_logprobs(self.vlm, prompts, targets, return_logits=True)
        noisy_prompts = [VisionInput(p.ids, {k: add_diffusion_noise(v, self.hparams.noise_step, self._generator)
                                             if k == "pixel_values" else v for k, v in p.visual.items()})
                         for p in prompts]
        with torch.no_grad():
            _, _, noisy = completion_logprobs(self.vlm, noisy_prompts, targets, grad=False, return_logits=True)
        weights = noise_weights(clean.detach(), noisy) * mask
        return -((logprobs * weights).sum() / weights.sum())

    def training_step(self, batch: list[RankExample], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss

    @torch.no_grad()
    def scores(self, query: str, pages: list[Page]) -> np.ndarray:
        from polyrank.shared.protocol import Candidate

        return self.reranker().score(query, [Candidate(p.id, p) for p in pages])


SERVED = {"mmr5": ("docimage.mmr5", "docimage.mmr5.tiny"), "ragllava": ("docimage.ragllava", "docimage.ragllava.tiny")}


def lm_from_recipe_checkpoint(path: str | Path, family: str, device: str | None = None
                              ) -> tuple[VisionLM, dict[str, Any]]:
    """The VLM a docimage recipe checkpoint serves (base rebuilt from ``model``, adapters loaded strictly and
    merged) and the reranker options it implies (``reasoning`` / ``prompt``)."""
    from polyrank.shared.checkpoints import read_lightning_checkpoint
    from polyrank.shared.rl.lora import is_lora_key

    ckpt = read_lightning_checkpoint(path, prefix="model.", module="a docimage recipe module")
    hp = ckpt.hparams
    if "model" not in hp or hp.get("serve_as") not in SERVED[family]:
        raise PolyrankError(f"{path} was not written by a docimage {family} recipe (serve_as={hp.get('serve_as')!r}; "
                            f"expected one of {SERVED[family]}); load it with the reranker named by its serve_as")
    vlm = with_lora(base_vlm(str(hp["model"]), device=device), lora_settings(hp.get("lora")), int(hp.get("seed", 0)))
    own = {k for k in vlm.model.state_dict() if is_lora_key(k)}
    given = {k for k in ckpt.state_dict if is_lora_key(k)}
    if own != given:
        raise PolyrankError(f"{path}: adapter weights do not match the rebuilt model (missing "
                            f"{sorted(own - given)[:3]}, unexpected {sorted(given - own)[:3]}); the checkpoint comes "
                            "from another base model or LoRA setting")
    for key in given:
        if vlm.model.state_dict()[key].shape != ckpt.state_dict[key].shape:
            raise PolyrankError(f"{path}: adapter {key} has shape {tuple(ckpt.state_dict[key].shape)}, the model "
                                f"expects {tuple(vlm.model.state_dict()[key].shape)}")
    vlm.model.load_state_dict({k: ckpt.state_dict[k] for k in given}, strict=False)
    merged = vlm.model.merge_and_unload().eval()
    options = {"reasoning": bool(hp.get("reasoning", True))} if family == "mmr5" else \
        {"prompt": str(hp.get("prompt", "plain"))}
    return VisionLM(merged, vlm.processor, f"{hp['model']} + LoRA {Path(path).name}"), options
