"""The causal transformer block and its attention kernel against the plain computation."""

import pytest
import torch

from algorithms.transformer import Block, DroppedCausalAttention, causal_mask


def _attention_by_the_book(q, k, v, mask, keep, p):
    weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + mask, -1)
    return (weights * keep / (1 - p)) @ v


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_dropped_attention_is_attention_with_dropout_in_value_and_gradient(chunk):
    """The sliced, recomputing attention equals softmax + dropout + matmul written out, with
    the same keep-mask (drawn from the same seed), forward and backward."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(5, 2, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    mask = torch.zeros(6, 6, dtype=torch.float64).masked_fill_(
        torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    upstream = torch.randn(5, 2, 6, 4, generator=g, dtype=torch.float64)
    torch.manual_seed(7)
    out = DroppedCausalAttention.apply(q, k, v, mask, 0.3, chunk)
    grads = torch.autograd.grad((out * upstream).sum(), (q, k, v))
    torch.manual_seed(7)
    keep = torch.rand(5, 2, 6, 6) >= 0.3
    assert 0 < keep.float().mean() < 1
    expected = _attention_by_the_book(q, k, v, mask, keep, 0.3)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), (q, k, v))
    torch.testing.assert_close(out, expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


def test_causal_mask_hides_later_keys():
    mask = causal_mask(torch.tensor([0, 2, 3]), 4)
    assert mask.shape == (3, 4)
    assert torch.isinf(mask).tolist() == [[False, True, True, True],
                                          [False, False, False, True],
                                          [False, False, False, False]]


def test_block_computes_only_the_wanted_outputs():
    """Asking a block for some token positions gives exactly what the full block gives at
    those positions (no dropout: eval mode)."""
    torch.manual_seed(0)
    block = Block(16, 2, 0.1, 0.1).eval()
    x = torch.randn(3, 12, 16)
    read = torch.tensor([2, 3, 6, 7, 10, 11])
    torch.testing.assert_close(block(x, read), block(x)[:, read], rtol=1e-5, atol=1e-6)


def test_block_is_causal():
    """An output depends on its own and earlier tokens only: changing the last token changes
    the last output and nothing before it."""
    torch.manual_seed(0)
    block = Block(16, 2, 0.0, 0.0).eval()
    x = torch.randn(2, 7, 16)
    changed = x.clone()
    changed[:, -1] += 1.0
    before, after = block(x), block(changed)
    torch.testing.assert_close(before[:, :-1], after[:, :-1])
    assert not torch.allclose(before[:, -1], after[:, -1])


def test_block_training_path_matches_the_fused_one_without_dropout():
    """With dropout on, training runs DroppedCausalAttention; at p -> 0 its math is the fused
    causal attention's (the keep-mask keeps everything)."""
    torch.manual_seed(0)
    block = Block(16, 2, 1e-12, 0.0)
    x = torch.randn(3, 9, 16)
    for read in (None, torch.tensor([1, 4, 8])):
        trained = block.train()(x, read)
        fused = block.eval()(x, read)
        torch.testing.assert_close(trained, fused, rtol=1e-5, atol=1e-6)
