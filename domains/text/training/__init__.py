"""Training recipes of the text LLM rerankers: FIRST's ranking loss, ProRank's two stages, Rank-R1's GRPO, and the
training data readers (MS MARCO triples, BEIR layout with first-stage negatives). Each recipe is a LightningModule
that ``polyrank fit --config configs/text/<recipe>.yaml`` trains and ``polyrank.domains.text.load`` serves."""
