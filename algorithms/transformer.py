"""A pre-norm causal transformer block and the attention kernel it trains with.

The math is nn.MultiheadAttention's in a GPT-style block (x + attn(LN(x)), then
x + MLP(LN(x))); two things make it cheaper without changing what it computes:

- `Block(x, outputs)` computes the outputs at the given token positions only. Keys and values
  still come from every token, so those outputs equal the full block's at the same positions;
  a model whose heads read some tokens skips the others' queries, out-projection and MLP in
  its last block.
- attention with dropout (training) runs `DroppedCausalAttention`, a batch slice at a time
  with the weights recomputed in backward; without dropout (evaluation) PyTorch's fused
  attention runs.

Attention, softmax included, runs in fp32 even where the projections and MLP run in bf16
(algorithms/nets.py, "Precision"). tests/test_algorithms/test_transformer.py checks the kernel
and the partial outputs against the plain computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.nets import full_precision


class DroppedCausalAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d) + mask) with dropout on the attention weights, times v: the
    math of nn.MultiheadAttention in training, computed a slice of the batch at a time so each
    slice's (heads x queries x keys) weights stay in cache, and recomputed in backward instead
    of kept (as FlashAttention does). PyTorch's fused attention has no CPU kernel with
    dropout, and its fallback materializes every intermediate of the whole batch. Only the
    dropout's keep-mask (one byte per weight) is saved.

    q, k, v: (batch, heads, tokens, head dim); mask: additive, (queries, keys); p: dropout
    probability; chunk: batch rows per slice."""

    @staticmethod
    def forward(ctx, q, k, v, mask, p: float, chunk: int):
        # one draw for the whole batch, so the mask does not depend on the slicing
        keep = torch.rand(*q.shape[:-1], k.shape[-2], device=q.device) >= p
        scale, out = q.shape[-1] ** -0.5, torch.empty_like(q)
        for i in range(0, q.shape[0], chunk):
            part = slice(i, i + chunk)
            weights = torch.softmax(q[part] @ k[part].transpose(-1, -2) * scale + mask, -1)
            torch.matmul(weights * keep[part] * (1 / (1 - p)), v[part], out=out[part])
        ctx.save_for_backward(q, k, v, mask, keep)
        ctx.p, ctx.chunk = p, chunk
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, mask, keep = ctx.saved_tensors
        p, chunk = ctx.p, ctx.chunk
        scale = q.shape[-1] ** -0.5
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        for i in range(0, q.shape[0], chunk):
            part = slice(i, i + chunk)
            weights = torch.softmax(q[part] @ k[part].transpose(-1, -2) * scale + mask, -1)
            kept = keep[part] * (1 / (1 - p))
            torch.matmul((weights * kept).transpose(-1, -2), grad[part], out=dv[part])
            d_weights = grad[part] @ v[part].transpose(-1, -2) * kept
            d_scores = weights * (d_weights - (d_weights * weights).sum(-1, keepdim=True))
            d_scores *= scale
            torch.matmul(d_scores, k[part], out=dq[part])
            torch.matmul(d_scores.transpose(-1, -2), q[part], out=dk[part])
        return dq, dk, dv, None, None, None


def causal_mask(positions: torch.Tensor, length: int) -> torch.Tensor:
    """Additive mask of queries at `positions` over `length` keys: a query sees the keys at or
    before its own position."""
    return torch.zeros(len(positions), length, device=positions.device).masked_fill_(
        torch.arange(length, device=positions.device) > positions[:, None], float("-inf"))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)), causal attention.

    `outputs`: the token positions whose outputs are wanted (None: all); the other positions'
    queries, out-projection and MLP are not computed (keys and values still come from every
    token)."""

    #: batch rows per slice of DroppedCausalAttention; a slice holds chunk x heads x tokens^2
    #: attention weights (64 x 8 heads x 40 x 40 floats: 3 MB), small enough to stay in cache
    attention_chunk = 64

    def __init__(self, dim: int, heads: int, attention_dropout: float, residual_dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)  # nn.MultiheadAttention's in-projection
        self.proj = nn.Linear(dim, dim)  # its out-projection
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
                                 nn.Dropout(residual_dropout))
        self.drop = nn.Dropout(residual_dropout)
        self.heads, self.attention_dropout = heads, attention_dropout

    def forward(self, x: torch.Tensor, outputs: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, dim = x.shape
        split = (batch, length, self.heads, dim // self.heads)
        normed = self.norm1(x)
        if outputs is None:
            q, k, v = self.qkv(normed).view(*split[:2], 3, *split[2:]).permute(2, 0, 3, 1, 4)
            positions = torch.arange(length, device=x.device)
        else:  # the in-projection's rows: queries [0, dim), keys and values [dim, 3 dim)
            k, v = F.linear(normed, self.qkv.weight[dim:], self.qkv.bias[dim:]).view(
                *split[:2], 2, *split[2:]).permute(2, 0, 3, 1, 4)
            x, positions = x[:, outputs], outputs
            q = F.linear(normed[:, outputs], self.qkv.weight[:dim], self.qkv.bias[:dim]).view(
                batch, len(outputs), *split[2:]).transpose(1, 2)
        mask = causal_mask(positions, length)
        # attention in fp32, softmax included, also where the projections ran in bf16
        q, k, v = q.float(), k.float(), v.float()
        with full_precision(x):
            if self.training and self.attention_dropout > 0:
                attended = DroppedCausalAttention.apply(
                    q.contiguous(), k.contiguous(), v.contiguous(), mask,
                    self.attention_dropout, self.attention_chunk)
            elif outputs is None:
                attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.drop(self.proj(attended.transpose(1, 2).reshape(batch, -1, dim)))
        return x + self.mlp(self.norm2(x))
