"""Training LLM rerankers: LoRA adapters, supervised fine-tuning and GRPO; this package knows no domain.

- :mod:`.lora`: LoRA through ``peft`` (only adapter weights train), the frozen reference as the same model with
  its adapters disabled, and Lightning checkpoints that hold only the adapter weights (plus optimiser and RNG
  state, which Lightning adds), so ``--ckpt_path last`` resumes exactly.

Importing this package stays light (no torch); the heavy modules import what they need.
"""
