"""LSPC-code: LSPC as its authors' code trains it, recorded as LSPC-S-code and LSPC-O-code.

The paper's tables were produced by PrajwalKoirala/LSPC-Safe-Offline-RL, read line by line at
commit 6bad52294101b1b27ad48e42f1966cbf7ea5c8f6 (lspc_iql.py, lspc_iql_configs.py,
train_lspc_iql.py). Where the code departs from the paper's text, LSPC (algorithms/lspc.py)
follows the text and this method follows the code; it is LSPC with other Config defaults, the
same per-task overrides and the code's data pipeline, not a second copy of the algorithm.
tests_oracle/test_lspc_official.py runs both side by side from the same weights, batches
and random draws and finds every parameter equal.

Where the code departs from the paper's text:

| paper's text -> authors' code | authors' code | LSPC -> LSPC-code |
|---|---|---|
| V^c in its own loss (eq. 41): unclamped -> clamped at 0 | lspc_iql.py:480, 494 | clamp_vc_in_loss False -> True |
| twin critics' losses (eq. 40, 42): summed -> averaged | lspc_iql.py:462, 513 | twin_loss_reduction "sum" -> "mean" |
| LSPC-S box: 0.25 on every task (A.3.1) -> vae_clamper [1] | lspc_iql.py:222 | safe_epsilon 0.25 -> None (= eps) |
| LSPC-O's z: eps tanh(mu_delta(s)) -> sampled [2] | lspc_iql.py:261-262, 277, 284 | optimal_samples_latent False -> True |
| done: none in Algorithm 2 -> terminal + timeout, unclipped [3] | lspc_iql.py:65 | clip_done True -> False |
| unfinished last trajectory: not said -> dropped [4] | train_lspc_iql.py:69-78 | LSPCCode.training_data |

[1] 0.6 on CarCircle, DroneRun, DroneCircle, CarRun, AntCircle, BallRun and BallCircle
    (lspc_iql_configs.py:60, 77, 86, 95, 104, 113, 122), 0.25 elsewhere (:51); in every
    config equal to max_latent_action, LSPC-O's eps, hence safe_epsilon None.
[2] u ~ mu_delta(. | s), z = eps tanh(u); the paper trains so (eq. 14) and is silent on
    evaluation, where LSPC acts at the mean.
[3] 2 where a transition is both terminal and timed out: it bootstraps with -gamma V(s').
[4] train_lspc_iql.py passes the data through DSRL's pre_process_data (every option off),
    which rebuilds it from whole trajectories, so transitions after the last done are lost.

Where the paper is silent or loose, LSPC already takes the code's choice (both alike):

| choice | authors' code | field (both) |
|---|---|---|
| bootstrapping stops at timeouts | lspc_iql.py:65 | done_on_timeout True |
| Q^c target, V^c(s), V^c(s') clamped at 0 as targets and in A_c | lspc_iql.py:478, 480, 585 | clamp_cost_values True |
| KL averaged over latent dims, coefficient 0.5 | lspc_iql.py:216 | kl_reduction "mean", kl_coef 0.5 |
| squared action errors summed over dims (eq. 43, 44) | lspc_iql.py:531, 557 | (fixed) |
| targets V(s'), V^c(s') from before this step's V update | lspc_iql.py:583-585 | (fixed) |
| cost clip 200, zeta 2 (the trainer's defaults 1000, 3: lspc_iql.py:396, 399) | lspc_iql_configs.py:40, 46; train_lspc_iql.py:98, 101 | max_weight, reward_inverse_temperature |
| w_c mask 1[V^c < 0.02] 1[Q^c < 0.02] on MetaDrive, 999 (off) else | lspc_iql.py:485, lspc_iql_configs.py:55, 281 | safe_value_threshold |
| LSPC-O's eps 0.6 on the seven tasks of [1] | lspc_iql_configs.py:61, 78, ... | epsilon (OVERRIDES) |
| log-std clamps, widths, Adam 3e-4, 1e6 steps, no scaling | lspc_iql.py:167, 256; lspc_iql_configs.py:29-54 | (defaults) |

Not reproduced, being the harness's protocol rather than training: the best checkpoint by
evaluation cost (train_lspc_iql.py:157-164; the harness reports the final model), unseeded
evaluation environments (lspc_iql.py:653), evaluation every 20k steps on 10 episodes, and
batch indices drawn from torch's global generator (lspc_iql.py:74; here each sampler has its
own seeded stream, the same uniform distribution).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algorithms import lspc
from tasks.datasets import done_mask


@dataclass(frozen=True)
class Config(lspc.Config):
    safe_epsilon: float | None = None
    """LSPC-S box: eps itself (the code's vae_clamper equals max_latent_action on every task)"""
    clamp_vc_in_loss: bool = True
    """V^c clamped at 0 inside its own loss (lspc_iql.py:480)"""
    optimal_samples_latent: bool = True
    """LSPC-O samples z from mu_delta (lspc_iql.py:277)"""
    twin_loss_reduction: str = "mean"
    """the twin critics' losses averaged (lspc_iql.py:462, 513)"""
    clip_done: bool = False
    """done = terminal + timeout, unclipped (lspc_iql.py:65)"""


class LSPCCode(lspc.LSPC):
    Config = Config
    policies = ("LSPC-S-code", "LSPC-O-code")
    overrides = lspc.OVERRIDES  # the code's per-task values are the paper's (see the table)

    def training_data(self, arrays):
        """The transitions up to the last terminal or timeout, as DSRL's pre_process_data
        rebuilds the data from whole trajectories (train_lspc_iql.py:69)."""
        done = np.flatnonzero(done_mask(arrays))
        end = len(arrays["rewards"]) if done.size == 0 else done[-1] + 1
        if end == len(arrays["rewards"]):
            return arrays
        return {key: value[:end] for key, value in arrays.items()}
