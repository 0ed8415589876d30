"""MTM matcher: memory-aware Transformer over (claim, key sentence) pairs (Sheng et al., ACL 2021, Sec. 3.3-3.4).

For each of the k key sentences s_j of an article: encode ``[CLS] q [SEP] s_j [SEP]``; ``Q_j`` = mean of
last-layer states over the claim tokens, ``S_j`` = over the sentence tokens, ``m_j`` = s_j's pattern vector.
The article representation is ``sum_j w_j [Q_j; S_j; m_j]`` (Eq. 6) and the classifier is the reference's
stack of linears ``3d -> 3d/2 -> ... -> 2`` with no non-linearity between them, then GELU, dropout 0.5, GELU;
class 1 (the article fact-checks the claim) is the ranking score. Documented non-reference options: ``head="mlp"``
(trains in CPU budgets) and ``readout="logit_diff"`` (monotone read-out), see :class:`MatchingHead`.

Layer mapping: the reference (BERT-base, 12 layers) loads embeddings + layer 0 from ROT and freezes them
(``finetune_front_layers=False``) and trains layers 1-11; here the same rule applies to any depth (MiniLM:
embeddings + layer 0 frozen from ROT, layers 1-5 trained). The reference's re-initialised pooler never
reaches the output, so it is omitted. The memory is a buffer, changed only by the PMB update.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from polyrank.domains.mtm.encoding import masked_mean, pair_batch
from polyrank.domains.mtm.pmb import static_embeddings
from polyrank.domains.mtm.selection import KeySentences, select_key_sentences


class MatchingHead(nn.Module):
    """The matching classifier; ``kind`` selects it.

    ``"reference"`` (``model/MTM.py``): linears ``3d -> 3d/2 -> ... -> 2`` (last without bias) with no
    non-linearity between them, then GELU, dropout, GELU. Its end-to-end gain at initialisation is about 0.07,
    so cross-entropy starts on the ln 2 plateau and the reference needs ~250k steps to leave it.
    ``"mlp"`` (a head that trains in CPU budgets, not the paper's): ``3d -> d`` linear, GELU, dropout, ``d -> 2``
    linear; its logits are used as they are (no output activation).

    :meth:`logits` are the pre-activation outputs of the last linear; ``forward`` is what the loss sees.
    """

    def __init__(self, in_dim: int, n_layers: int = 5, dropout: float = 0.5, kind: str = "reference") -> None:
        super().__init__()
        if kind not in HEADS:
            raise ValueError(f"head {kind!r}: expected one of {HEADS}")
        self.kind, self.n_layers = kind, n_layers
        if kind == "reference":
            dims = [in_dim]
            for _ in range(n_layers - 1):
                dims.append(max(2, dims[-1] // 2))
            layers = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
            layers.append(nn.Linear(dims[-1], 2, bias=False))
            self.linears = nn.Sequential(*layers)
        else:
            hidden = max(2, in_dim // 3)
            self.linears = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                         nn.Linear(hidden, 2))
        self.dropout = nn.Dropout(dropout)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linears(x)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """The reference's output activation (GELU, dropout, GELU); identity for the ``mlp`` head."""
        if self.kind == "mlp":
            return logits
        return nn.functional.gelu(self.dropout(nn.functional.gelu(logits)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.logits(x))


HEADS = ("reference", "mlp")
READOUTS = ("class1", "logit_diff")


def readout_scores(raw_logits: torch.Tensor, head: MatchingHead, readout: str) -> torch.Tensor:
    """Ranking score from the pre-activation logits ``(n, 2)``: ``"class1"`` is the reference's class-1 output
    after the head's activation (GELU twice for the reference head: not monotone in the logit);
    ``"logit_diff"`` is ``z_1 - z_0`` before any activation (monotone in the class-1 log-odds)."""
    if readout == "class1":
        return head.activate(raw_logits)[:, 1]
    if readout == "logit_diff":
        return raw_logits[:, 1] - raw_logits[:, 0]
    raise ValueError(f"readout {readout!r}: expected one of {READOUTS}")


class MTM(nn.Module):
    """Encoder + pattern memory + matching head; ``score_articles`` is the one inference path."""

    def __init__(self, config, n_key_sentences: int = 5, n_patterns: int = 20, lambda_q: float = 0.6,
                 lambda_p: float = 0.4, n_mlp_layers: int = 5, dropout: float = 0.5, max_length: int = 256,
                 claim_max_length: int = 180, finetune_front_layers: bool = False,
                 finetune_inter_layers: bool = True, cls_id: int = 101, sep_id: int = 102,
                 head: str = "reference", readout: str = "class1") -> None:
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(config, add_pooling_layer=False)
        self.k, self.lambda_q, self.lambda_p = n_key_sentences, lambda_q, lambda_p
        self.max_length, self.claim_max_length = max_length, claim_max_length
        self.cls_id, self.sep_id = cls_id, sep_id
        self.register_buffer("memory", torch.zeros(n_patterns, config.hidden_size))
        if readout not in READOUTS:
            raise ValueError(f"readout {readout!r}: expected one of {READOUTS}")
        self.readout = readout
        self.head = MatchingHead(3 * config.hidden_size, n_mlp_layers, dropout, kind=head)
        self.set_trainable(finetune_front_layers, finetune_inter_layers)

    def set_trainable(self, front: bool, inter: bool) -> None:
        """Front = embeddings + layer 0 (from ROT); last layer always trains; the others follow ``inter``."""
        last = self.bert.config.num_hidden_layers - 1
        for name, param in self.bert.named_parameters():
            if name.startswith("embeddings") or name.startswith("encoder.layer.0."):
                param.requires_grad = front
            elif name.startswith(f"encoder.layer.{last}."):
                param.requires_grad = True
            else:
                param.requires_grad = inter

    def load_rot(self, rot_bert: nn.Module) -> None:
        """Copy ROT's embeddings and layer 0 into the encoder."""
        self.bert.embeddings.load_state_dict(rot_bert.embeddings.state_dict())
        self.bert.encoder.layer[0].load_state_dict(rot_bert.encoder.layer[0].state_dict())

    def embed(self, token_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        """Static embeddings E(text) from the (ROT-trained, frozen) word-embedding table, ``(N, d)``."""
        with torch.no_grad():
            return static_embeddings(self.bert.embeddings.word_embeddings.weight.detach(), token_lists)

    def select(self, claim_vecs: torch.Tensor, sentence_vecs: Sequence[torch.Tensor]) -> KeySentences:
        """Key sentences for B (claim, article) pairs; ``sentence_vecs[i]`` is ``(n_i, d)``."""
        n = max(len(s) for s in sentence_vecs)
        dim = claim_vecs.shape[1]
        padded = claim_vecs.new_zeros((len(sentence_vecs), n, dim))
        mask = torch.zeros((len(sentence_vecs), n), dtype=torch.bool, device=claim_vecs.device)
        for i, vecs in enumerate(sentence_vecs):
            padded[i, :len(vecs)] = vecs
            mask[i, :len(vecs)] = True
        return select_key_sentences(claim_vecs, padded, mask, self.memory, self.k, self.lambda_q, self.lambda_p)

    def forward(self, claims: Sequence[Sequence[int]], articles: Sequence[Sequence[Sequence[int]]],
                keys: KeySentences, raw: bool = False) -> torch.Tensor:
        """Head outputs ``(B, 2)`` (``raw``: pre-activation logits) for B (claim tokens, article sentence tokens)
        pairs with their key sentences."""
        device = self.memory.device
        b = len(claims)
        idx = keys.indices.tolist()
        real = [(i, j) for i in range(b) for j in range(self.k) if idx[i][j] >= 0]
        batch = pair_batch([claims[i] for i, _ in real], [articles[i][idx[i][j]] for i, j in real], self.cls_id,
                           self.sep_id, self.max_length, self.claim_max_length).to(device)
        states = self.bert(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           token_type_ids=batch.token_type_ids).last_hidden_state       # (M, L, d)
        q, s = masked_mean(states, batch.claim_mask), masked_mean(states, batch.sentence_mask)  # (M, d)
        dim = q.shape[1]
        per_sentence = states.new_zeros((b, self.k, 3 * dim))                          # (B, k, 3d)
        rows = torch.tensor([i for i, _ in real], device=device)
        cols = torch.tensor([j for _, j in real], device=device)
        patterns = self.memory[keys.patterns.to(device)[rows, cols]].to(states.dtype)
        per_sentence[rows, cols] = torch.cat([q, s, patterns], dim=-1)
        pooled = (keys.weights.to(device=device, dtype=states.dtype)[..., None] * per_sentence).sum(1)
        return self.head.logits(pooled) if raw else self.head(pooled)

    @torch.no_grad()
    def score_articles(self, claim: Sequence[int], articles: Sequence[Sequence[Sequence[int]]],
                       claim_vec: torch.Tensor | None = None,
                       sentence_vecs: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, KeySentences]:
        """Ranking scores ``(n_articles,)`` (the model's ``readout``) of one claim against its candidates, with the
        key sentences."""
        claim_vec = self.embed([claim]) if claim_vec is None else claim_vec[None]
        if sentence_vecs is None:                       # one embedding pass over every sentence, then split
            flat = self.embed([s for sents in articles for s in sents])
            sentence_vecs = list(flat.split([len(sents) for sents in articles]))
        keys = self.select(claim_vec.expand(len(articles), -1), sentence_vecs)
        raw = self([claim] * len(articles), articles, keys, raw=True)
        return readout_scores(raw, self.head, self.readout).float(), keys


def build_mtm(backbone: str, **kwargs) -> MTM:
    """An :class:`MTM` whose encoder starts from ``backbone`` (``"tiny"``, ``"minilm"`` or a local dir)."""
    from transformers import BertModel

    from polyrank.domains.mtm.encoding import load_tokenizer, resolve_backbone

    tok_dir, config, pretrained = resolve_backbone(backbone)
    tokenizer = load_tokenizer(tok_dir)
    model = MTM(config, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, **kwargs)
    if pretrained:
        model.bert.load_state_dict(BertModel.from_pretrained(str(tok_dir), local_files_only=True,
                                                             add_pooling_layer=False).state_dict())
    model.set_trainable(kwargs.get("finetune_front_layers", False), kwargs.get("finetune_inter_layers", True))
    return model
