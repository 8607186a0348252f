"""Training steps replayed from a CUDA graph.

These networks are small: on a GPU a training step is a few hundred kernel launches of
small matmuls, and the launches, not the arithmetic, set the pace (measured in
docs/performance.md, "On a GPU"). A CUDA graph records one step's kernels once and
replays them with a single launch, so the step costs its arithmetic.

Only a method whose class sets `graph_safe` is captured: its train_step must be tensor work
alone, the same every step (no host syncs such as .item(), no Python branch on a value or on
a step count), with all its optimizers on the GPU. State the step changes must change in
place: `prepare_graph_capture` moves a Python counter or schedule onto the device first
(FISOR's cosine learning rate); tensors such as a PID Lagrangian's integral or CPQ's
log alpha are updated with copy_. Every other method, and every method on the CPU, runs its
step as it is. BENCH_CUDA_GRAPHS=0 turns capture off (to compare, or to debug a step).

The step is the same update: the first `warmup` steps run eagerly (on a side stream, as
capture requires, so the allocator and cuBLAS have settled), then one step is captured and
every later batch is copied into the captured inputs and the graph replayed. Random draws
inside the step (a CVAE's noise) come from the same generator, advanced the same way:
tests/test_algorithms/test_methods.py holds replayed steps to the eager weights (to the GPU's
rounding).
"""

from __future__ import annotations

import os

import torch


def optimizers_of(method) -> list[torch.optim.Optimizer]:
    return [value for value in vars(method).values() if isinstance(value, torch.optim.Optimizer)]


def uses_cuda_graph(method, device: str) -> bool:
    return (str(device).startswith("cuda") and getattr(method, "graph_safe", False)
            and os.environ.get("BENCH_CUDA_GRAPHS", "1") != "0")


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Keep the optimizer's step counts on the GPU, so that a replay advances them (Adam's
    bias correction reads them); counts restored from a checkpoint move there too."""
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True
    for param, state in optimizer.state.items():
        step = state.get("step")
        if isinstance(step, torch.Tensor) and step.device != param.device:
            state["step"] = step.to(param.device, torch.float32)


class GraphedTrainStep:
    """Call it as train_step: batch in, stats out (fresh tensors, safe to keep)."""

    def __init__(self, method, warmup: int = 3):
        self.eager, self.warmup = method.train_step, warmup
        method.prepare_graph_capture()
        for optimizer in optimizers_of(method):
            make_capturable(optimizer)
        self.calls, self.graph = 0, None
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict = {}
        self.side = torch.cuda.Stream()

    @property
    def calls_to_warm(self) -> int:
        """Calls until the graph is captured and replayed once."""
        return self.warmup + 1

    def __call__(self, batch: dict) -> dict:
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                stats = self.eager(batch)
            torch.cuda.current_stream().wait_stream(self.side)
            return stats
        if self.graph is None:
            self.inputs = {key: value.clone() for key, value in batch.items()}
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = self.eager(self.inputs)
        else:
            for key, value in batch.items():
                self.inputs[key].copy_(value)
        self.graph.replay()
        return {key: value.clone() if isinstance(value, torch.Tensor) else value
                for key, value in self.outputs.items()}


def training_step(method, device: str):
    """What the runner calls each step: the method's train_step, or its graphed replay."""
    if not uses_cuda_graph(method, device):
        return method.train_step
    return GraphedTrainStep(method)
