import numpy as np
import pytest
import torch

from w2strust.training.losses import AuxConfidenceLoss, alpha_at, soft_cross_entropy


def test_alpha_warmup_is_linear_then_flat():
    # 100 steps, warm-up over 20% -> α reaches α_max at step 20, linearly (no jump at the end).
    assert alpha_at(0, 100, 0.25, 0.2) == 0.0
    assert alpha_at(10, 100, 0.25, 0.2) == pytest.approx(0.125)
    assert alpha_at(19, 100, 0.25, 0.2) == pytest.approx(0.25 * 19 / 20)
    assert alpha_at(20, 100, 0.25, 0.2) == pytest.approx(0.25)
    assert alpha_at(90, 100, 0.25, 0.2) == pytest.approx(0.25)
    assert alpha_at(0, 100, 0.3, 0.0) == pytest.approx(0.3)


def test_soft_ce_matches_torch_cross_entropy_for_hard_targets():
    logits = torch.randn(8, 3)
    y = torch.randint(0, 3, (8,))
    assert soft_cross_entropy(logits, torch.nn.functional.one_hot(y, 3).float()).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)


def test_alpha_zero_equals_soft_cross_entropy():
    logits = torch.randn(16, 2)
    weak = torch.softmax(torch.randn(16, 2), -1)
    loss = AuxConfidenceLoss(total_steps=10, alpha_max=0.0, warmup_frac=0.2, positive_rate=0.5)
    assert loss(logits, weak).item() == pytest.approx(soft_cross_entropy(logits, weak).item())


def test_threshold_reproduces_weak_class_balance():
    torch.manual_seed(0)
    loss = AuxConfidenceLoss(total_steps=100, alpha_max=0.3, warmup_frac=0.0, positive_rate=0.3, buffer_size=1000)
    hardened = [loss.hardened(torch.randn(50, 2)) for _ in range(20)]  # 1000 scores fill the buffer
    last = loss.hardened(torch.randn(1000, 2))
    assert last[:, 1].float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert all(h.sum(-1).eq(1).all() for h in hardened)


def test_threshold_works_with_batches_of_one():
    loss = AuxConfidenceLoss(total_steps=100, alpha_max=0.3, warmup_frac=0.0, positive_rate=0.25, buffer_size=400)
    torch.manual_seed(1)
    positives = [loss.hardened(torch.randn(1, 2))[0, 1].item() for _ in range(800)]
    assert np.mean(positives[400:]) == pytest.approx(0.25, abs=0.06)


def test_aux_loss_mixes_weak_and_hardened_targets():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    weak = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    loss = AuxConfidenceLoss(total_steps=10, alpha_max=0.5, warmup_frac=0.0, positive_rate=0.5)
    value = loss(logits, weak).item()
    hard = loss.hardened(logits)
    expected = 0.5 * soft_cross_entropy(logits, weak).item() + 0.5 * soft_cross_entropy(logits, hard).item()
    assert value == pytest.approx(expected, rel=1e-5)
    assert hard.argmax(-1).tolist() == [0, 1]


def test_default_threshold_is_the_current_batchs_quantile():
    """aux_buffer 0 (default, as the reference): each batch is hardened to the prior on its own scores, so
    stale scores from earlier steps cannot shift it (a rolling buffer of 256 made the students drift)."""
    loss = AuxConfidenceLoss(total_steps=100, alpha_max=0.3, warmup_frac=0.0, positive_rate=0.25)
    loss.hardened(torch.full((32, 2), 0.0) + torch.tensor([0.0, 5.0]))  # an earlier batch of confident positives
    torch.manual_seed(2)
    hard = loss.hardened(torch.randn(40, 2))
    assert hard[:, 1].sum().item() == 10  # 25% of this batch, whatever came before
