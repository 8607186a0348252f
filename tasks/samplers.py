"""Minibatches from a task's DSRL arrays, held as tensors on the training device: uniform
transitions, or windows of consecutive steps for sequence models (CDT). What a method
wants is its class attribute `wants`; the sampler's generator is part of a training
checkpoint, so a resumed job draws the batches an unbroken one draws."""

from __future__ import annotations

import functools

import numpy as np
import torch

from tasks.datasets import split_trajectories, to_go


class BatchSampler:
    """Uniform minibatches of transitions, held as tensors on the training device."""

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int, device: str):
        self.tensors = {k: torch.as_tensor(v, device=device) for k, v in arrays.items()}
        self.size = len(arrays["rewards"])
        self.batch_size = batch_size
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def sample(self) -> dict[str, torch.Tensor]:
        index = torch.randint(self.size, (self.batch_size,), generator=self.generator,
                              device=self.generator.device)
        return {k: v[index] for k, v in self.tensors.items()}


class SequenceSampler:
    """Minibatches of windows of `seq_len` consecutive steps of one trajectory, as OSRL's
    SequenceDataset (for sequence models, `wants == "sequences"`).

    A trajectory is drawn with probability proportional to `trajectory_weights` (one weight per
    trajectory of tasks.datasets.split_trajectories, in data order; None: uniform, as OSRL
    without cost_sample), then a start index uniformly within it; the window runs forward
    from there and is padded with zeros past the trajectory's end (mask 0), so no window
    crosses a trajectory boundary. Returns-to-go and costs-to-go are undiscounted sums from
    each step to the end of its trajectory, unscaled (the method scales them), or the arrays'
    own "returns_to_go" / "costs_to_go" where given (relabelled trajectories); timesteps are
    start + 0..seq_len-1, padded positions included, as OSRL.

    Batch: observations (B, T, obs), actions (B, T, act), returns_to_go, costs_to_go, costs
    (B, T) float; timesteps (B, T) long; mask (B, T) float, 1 on real steps.
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int, device: str,
                 seq_len: int, trajectory_weights: np.ndarray | None = None):
        trajectories = split_trajectories(arrays)
        starts, ends = trajectories.starts, trajectories.ends
        lengths = ends - starts
        costs = np.asarray(arrays["costs"], np.float32)
        # relabelled trajectories (CDT's augmentation) bring their own; else from the data
        returns_to_go = arrays.get("returns_to_go")
        if returns_to_go is None:
            returns_to_go = to_go(arrays["rewards"], trajectories)
        costs_to_go = arrays.get("costs_to_go")
        if costs_to_go is None:
            costs_to_go = to_go(costs, trajectories)
        as_tensor = functools.partial(torch.as_tensor, device=device)
        self.tensors = {
            "observations": as_tensor(np.asarray(arrays["observations"], np.float32)),
            "actions": as_tensor(np.asarray(arrays["actions"], np.float32)),
            "returns_to_go": as_tensor(np.asarray(returns_to_go, np.float32)),
            "costs_to_go": as_tensor(np.asarray(costs_to_go, np.float32)),
            "costs": as_tensor(costs),
        }
        self.starts = as_tensor(starts, dtype=torch.long)
        self.lengths = as_tensor(lengths, dtype=torch.long)
        self.offsets = torch.arange(seq_len, device=device)
        if trajectory_weights is not None:
            weights = np.asarray(trajectory_weights, np.float64)
            if weights.shape != (len(starts),) or not (weights >= 0).all() or weights.sum() <= 0:
                raise ValueError("trajectory_weights: one non-negative weight per trajectory, "
                                 "not all zero")
            trajectory_weights = as_tensor(weights / weights.sum(), dtype=torch.float64)
        self.weights = trajectory_weights
        self.batch_size, self.seq_len = batch_size, seq_len
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def sample(self) -> dict[str, torch.Tensor]:
        device = self.generator.device
        if self.weights is None:
            traj = torch.randint(len(self.starts), (self.batch_size,), generator=self.generator,
                                 device=device)
        else:
            traj = torch.multinomial(self.weights, self.batch_size, replacement=True,
                                     generator=self.generator)
        length = self.lengths[traj]
        start = (torch.rand(self.batch_size, generator=self.generator, device=device,
                            dtype=torch.float64) * length).long().clamp(max=length - 1)
        steps = start[:, None] + self.offsets  # (B, T) steps within the trajectory
        valid = steps < length[:, None]
        index = self.starts[traj][:, None] + torch.minimum(steps, length[:, None] - 1)
        mask = valid.float()
        batch = {}
        for key, value in self.tensors.items():
            picked = value[index]
            batch[key] = picked * (mask if picked.dim() == 2 else mask[..., None])
        batch["timesteps"] = steps
        batch["mask"] = mask
        return batch


def make_sampler(method, arrays, batch_size: int, seed: int, device: str):
    """The sampler a method trains on: transitions, or sequences with the method's options."""
    if getattr(method, "wants", "transitions") == "sequences":
        return SequenceSampler(arrays, batch_size, seed, device,
                               **method.sequence_options(arrays))
    return BatchSampler(arrays, batch_size, seed, device)
