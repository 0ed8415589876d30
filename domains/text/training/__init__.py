"""Training recipes of the text LLM rerankers; each is a LightningModule that ``polyrank fit --config
configs/text/<recipe>.yaml`` trains and ``polyrank.domains.text.load`` serves.

- :mod:`.first_loss`: FIRST, LM loss on the target permutation + weighted RankNet on the identifier logits.
- :mod:`.grpo_recipes`: Rank-R1 (setwise GRPO) and ProRank stage 1 (binary "0"/"1" GRPO warm-up), with rewards.
- :mod:`.prorank_stage2`: ProRank stage 2, BCE on logit("1") - logit("0") from stage 1's weights.
- :mod:`.data`: MS MARCO triples and BEIR layout with first-stage negatives (never a judged positive).
- :mod:`.serving`: a recipe checkpoint back into a causal LM (base + merged LoRA) for the family's reranker.
"""
