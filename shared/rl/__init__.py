"""Training LLM rerankers: LoRA adapters, supervised fine-tuning and GRPO; this package knows no domain.

- :mod:`.lora`: LoRA through ``peft`` (only adapter weights train), the frozen reference as the same model with
  its adapters disabled, and Lightning checkpoints that hold only the adapter weights (plus optimiser and RNG
  state, which Lightning adds), so ``--ckpt_path last`` resumes exactly.
- :mod:`.sampling`: G completions per prompt, batched under a token budget, seeded without touching the global
  RNG, with sampling-time log-probs.
- :mod:`.grpo`: group-normalised advantages, the token-level clipped objective with the k3 KL to the
  adapters-off reference (equal to TRL 1.16's loss to 1e-6), and ``GRPOModule``, the block recipes subclass.
- :mod:`.sft`: completion-only supervised fine-tuning (prompt and pad tokens masked) with chat templates.

Importing this package stays light (no torch); the heavy modules import what they need.
"""
