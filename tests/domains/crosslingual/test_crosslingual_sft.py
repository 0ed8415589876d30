"""LT-SFT (Ansell et al. 2022) pieces: top-K selection, exact apply/revert, composition by addition, gradient masks."""

from __future__ import annotations

import torch
from torch import nn

from polyrank.domains.crosslingual import sft


def _net(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))


def test_select_topk_picks_the_true_top_k_over_all_tensors():
    # hand-made deltas: the 4 largest |delta| are -9 (a[0,1]), 8 (b[2]), 7 (a[1,0]), -6 (b[0]); a per-tensor top-K
    # or a signed (not absolute) selection would pick others
    deltas = {"a": torch.tensor([[0.1, -9.0], [7.0, 0.5]]), "b": torch.tensor([-6.0, 0.2, 8.0, -0.3, 5.9])}
    masks = sft.select_topk(deltas, 4)
    assert masks["a"].tolist() == [[False, True], [True, False]]
    assert masks["b"].tolist() == [True, False, True, False, False]
    assert sum(int(m.sum()) for m in masks.values()) == 4


def test_apply_then_revert_restores_weights_bit_for_bit():
    # guards revert-by-subtraction: (w + d) - d != w in float32 for these magnitudes
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    names = [n for n, _ in net.named_parameters()]
    diff = sft.SparseDiff({names[0]: (torch.tensor([0, 5, 11]), torch.tensor([1e-7, 3.3333, -1e4]))},
                          {names[2]: torch.full((1, 3), 0.25)})
    applied = sft.apply(net, diff, with_heads=True)
    assert not torch.equal(net.state_dict()[names[0]], before[names[0]])
    assert torch.equal(net.state_dict()[names[2]], torch.full((1, 3), 0.25))
    sft.revert(net, applied)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_composition_is_theta0_plus_both_diffs_and_head_from_ranking_only():
    net = _net()
    theta0 = {k: v.clone() for k, v in net.state_dict().items()}
    w, head = "0.weight", "1.weight"
    rank = sft.SparseDiff({w: (torch.tensor([0, 1]), torch.tensor([1.0, 2.0]))}, {head: torch.ones(1, 3)})
    lang = sft.SparseDiff({w: (torch.tensor([1, 2]), torch.tensor([10.0, 20.0]))}, {head: torch.zeros(1, 3)})
    out = sft.compose(theta0, rank, lang)
    expected = theta0[w].clone().view(-1)
    expected[0] += 1.0
    expected[1] += 12.0
    expected[2] += 20.0
    assert torch.allclose(out[w].view(-1), expected)
    assert torch.equal(out[head], torch.ones(1, 3))  # the language diff's head is ignored
    # applying both diffs in place gives the same weights as compose
    sft.apply(net, rank, with_heads=True)
    sft.apply(net, lang, with_heads=False)
    assert all(torch.allclose(net.state_dict()[k], out[k]) for k in out)


def test_gradient_masks_and_projection_keep_unmasked_entries_at_theta0():
    # guards the weight-decay leak: AdamW's decoupled decay moves zero-gradient entries unless projected back
    net = _net()
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in net.named_parameters()}
    masks["0.weight"][0, 0] = True
    gm = sft.GradientMasks(net, masks, theta0)
    opt = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.5)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
        gm.project()
    for n, p in net.named_parameters():
        assert torch.equal(p.detach()[~masks[n]], theta0[n][~masks[n]]), n
    assert not torch.equal(net[0].weight[0, 0], theta0["0.weight"][0, 0])


def test_sparse_diff_round_trips_through_safetensors(tmp_path):
    diff = sft.SparseDiff({"x.weight": (torch.tensor([3, 7]), torch.tensor([0.5, -0.5]))},
                          {"classifier.weight": torch.ones(1, 2)})
    diff.save(tmp_path / "d.safetensors")
    back = sft.SparseDiff.load(tmp_path / "d.safetensors")
    assert torch.equal(back.diffs["x.weight"][0], diff.diffs["x.weight"][0])
    assert torch.equal(back.diffs["x.weight"][1], diff.diffs["x.weight"][1])
    assert torch.equal(back.heads["classifier.weight"], torch.ones(1, 2))
