"""Dropout masks from numpy's PCG64 (w2strust.training.dropout): the Bernoulli statistics, the stream they come from,
reproducibility, and the attention path that replaces F.scaled_dot_product_attention's dropout."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from w2strust.training.dropout import PCG64Dropout


@pytest.mark.parametrize("n", [1, 7, 1000])  # odd sizes use the first half of the last 64-bit draw
def test_masks_are_the_seeded_pcg64_words_against_the_threshold(n):
    mode = PCG64Dropout(5)
    reference = np.random.PCG64([5, 0x5EED])
    for p in (0.1, 0.5):
        words = reference.random_raw((n + 1) // 2).view(np.uint32)[:n]
        expected = words >= np.uint32(round(p * 2**32))
        np.testing.assert_array_equal(mode.keep_mask(torch.Size([n]), p, torch.device("cpu")).numpy(), expected)
    assert not mode.keep_mask(torch.Size([8]), 1.0, torch.device("cpu")).any()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_scale_and_independence(p):
    mode = PCG64Dropout(0)
    n = 1_000_001  # odd: one half-used draw
    a = mode.keep_mask(torch.Size([n]), p, torch.device("cpu")).numpy()
    b = mode.keep_mask(torch.Size([n]), p, torch.device("cpu")).numpy()
    sd = np.sqrt(p * (1 - p) / n)
    assert abs(a.mean() - (1 - p)) < 5 * sd and abs(b.mean() - (1 - p)) < 5 * sd
    # no correlation between two calls, nor between neighbouring elements of one call
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 5 / np.sqrt(n)
    with mode:
        y = F.dropout(torch.ones(n), p)
    assert abs(float(y.mean()) - 1.0) < 5 * sd / (1 - p)
    np.testing.assert_allclose(np.unique(y.numpy()), [0.0, 1 / (1 - p)], rtol=1e-6)


def test_same_seed_same_masks_other_seed_other_masks():
    def masks(seed):
        with PCG64Dropout(seed):
            return [torch.nn.Dropout(0.1)(torch.ones(4096)) for _ in range(3)]

    first, again, other = masks(0), masks(0), masks(1)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(first, other, strict=True))
    assert not torch.equal(first[0], first[1])  # a fresh mask per call


def test_eval_mode_and_p_zero_pass_through():
    x = torch.randn(64)
    with PCG64Dropout(0):
        assert torch.equal(F.dropout(x, 0.1, training=False), x)
        assert torch.equal(torch.nn.Dropout(0.0)(x), x)


@pytest.mark.parametrize("mask", ["none", "bool", "float", "causal", "gqa"])
def test_attention_matches_torch_sdpa_without_dropout(mask):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=g) for _ in range(3))
    kwargs = {}
    if mask == "bool":
        kwargs["attn_mask"] = torch.rand(2, 1, 5, 5, generator=g) > 0.3
        kwargs["attn_mask"][..., 0] = True  # no fully masked row (torch gives NaN or zeros there)
    elif mask == "float":
        kwargs["attn_mask"] = torch.randn(2, 1, 5, 5, generator=g)
    elif mask == "causal":
        kwargs["is_causal"] = True
    elif mask == "gqa":
        k, v, kwargs["enable_gqa"] = k[:, :2], v[:, :2], True
    expected = F.scaled_dot_product_attention(q, k, v, **kwargs)
    got = PCG64Dropout(0).attention(q, k, v, dropout_p=0.0, **kwargs)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_attention_mask_fully_masked_rows_and_a_mask_changed_in_place():
    """Bool masks become an additive bias (kept for the next layer): a fully masked query row gets uniform
    weights (the mean of the values), and a mask edited in place is not served from the kept bias."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=g) for _ in range(3))
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    mask[..., 2, :] = False  # query 2 may attend to nothing
    mode = PCG64Dropout(0)
    out = mode.attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out[..., 2, :], v.mean(-2))
    mask[..., 0, 1:] = False  # the same tensor, edited: query 0 now sees key 0 only
    torch.testing.assert_close(mode.attention(q, k, v, attn_mask=mask)[..., 0, :], v[..., 0, :])


def test_attention_dropout_is_intercepted_and_gradients_flow():
    q, k, v = (torch.randn(2, 4, 6, 8, requires_grad=True) for _ in range(3))
    with PCG64Dropout(0):
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    with PCG64Dropout(0):
        again = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    plain = F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(out, again) and not torch.allclose(out, plain)
    out.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))


def test_a_transformer_under_the_mode_trains_deterministically():
    """A bundled-architecture classifier: train-mode forwards use the PCG64 masks (reproducible from the seed);
    eval-mode forwards are untouched."""
    from w2strust.models import build_classifier

    torch.manual_seed(0)
    model, tok = build_classifier("tiny-bert", 2)
    enc = tok(["a short sentence", "another, somewhat longer sentence here"], padding=True, return_tensors="pt")
    model.train()
    with PCG64Dropout(3):
        a = model(**enc).logits
    with PCG64Dropout(3):
        b = model(**enc).logits
    with PCG64Dropout(4):
        c = model(**enc).logits
    assert torch.equal(a, b) and not torch.equal(a, c)
    model.eval()
    with torch.no_grad(), PCG64Dropout(3):
        d = model(**enc).logits
    with torch.no_grad():
        e = model(**enc).logits
    torch.testing.assert_close(d, e)
