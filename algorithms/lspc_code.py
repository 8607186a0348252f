"""LSPC-code: LSPC as its authors' code trains it, recorded as LSPC-S-code and LSPC-O-code.

The paper's tables were produced by PrajwalKoirala/LSPC-Safe-Offline-RL, read line by line at
commit 6bad52294101b1b27ad48e42f1966cbf7ea5c8f6 (lspc_iql.py, lspc_iql_configs.py,
train_lspc_iql.py). Where the code departs from the paper's text, LSPC (algorithms/lspc.py)
follows the text and this method follows the code; it is LSPC with other Config defaults, the
same per-task overrides and the code's data pipeline, not a second copy of the algorithm.
tests_oracle/test_lspc_official.py runs both side by side from the same weights, batches
and random draws and finds every parameter equal.

Where the code departs from the paper's text (LSPC value -> LSPC-code value):

| what | paper's text | authors' code | field: LSPC -> LSPC-code |
|---|---|---|---|
| V^c inside its own loss | eq. 41, no clamp | clamped at 0 (lspc_iql.py:480, 494) | clamp_vc_in_loss: False -> True |
| twin critics' losses | eq. 40, 42: summed | averaged (lspc_iql.py:462, 513) | twin_loss_reduction: "sum" -> "mean" |
| LSPC-S box eps_S | 0.25 on every task (A.3.1) | vae_clamper, 0.6 on CarCircle, DroneRun, DroneCircle, CarRun, AntCircle, BallRun, BallCircle (lspc_iql_configs.py:60, 77, 86, 95, 104, 113, 122; used at lspc_iql.py:222), always equal to max_latent_action | safe_epsilon: 0.25 -> None (= epsilon) |
| LSPC-O's z | eps tanh(mu_delta(s)) (sec. 3; LSPC reads it as the mean) | sampled: eps tanh(u), u ~ mu_delta(s) (lspc_iql.py:261-262, 277, 284) | optimal_samples_latent: False -> True |
| done where terminal and timeout are both set | no done in Algorithm 2 | their sum, 2: bootstraps with -gamma (lspc_iql.py:65) | clip_done: True -> False |
| an unfinished last trajectory | not said | dropped by DSRL's pre_process_data (train_lspc_iql.py:69-78) | LSPCCode.training_data |

Where the paper is silent or loose and LSPC already follows the code (both methods alike):

| what | authors' code | field (both) |
|---|---|---|
| bootstrap stops at timeouts | dones = terminals + timeouts (lspc_iql.py:65) | done_on_timeout=True |
| Q^c target and V^c clamped at 0 as targets and in A_c | lspc_iql.py:478, 480, 585 | clamp_cost_values=True |
| KL averaged over latent dims, times 0.5 | lspc_iql.py:216 | kl_reduction="mean", kl_coef=0.5 |
| squared action error summed over dims (eq. 43, 44) | lspc_iql.py:531, 557 | (fixed) |
| targets V(s'), V^c(s') from before the step's V update | lspc_iql.py:583-585 | (fixed) |
| cost weight clip 200 (the trainer's own default is 1000) | lspc_iql_configs.py:46; train_lspc_iql.py:98 over lspc_iql.py:399 | max_weight=200 |
| w_c mask 1[V^c < 0.02] 1[Q^c < 0.02] on MetaDrive, 999 (off) elsewhere | lspc_iql.py:485; lspc_iql_configs.py:55, 281 | safe_value_threshold (OVERRIDES) |
| LSPC-O's eps: 0.6 on the seven Bullet tasks above | max_latent_action, lspc_iql_configs.py:61, 78, ... | epsilon (OVERRIDES) |
| encoder log-std clamps, widths, Adam 3e-4, 1e6 steps | lspc_iql.py:167, 256; lspc_iql_configs.py:35-54 | vae/encoder_log_std_bounds, hidden, lr |

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
        done = np.flatnonzero((arrays["terminals"] > 0) | (arrays["timeouts"] > 0))
        end = len(arrays["rewards"]) if done.size == 0 else done[-1] + 1
        if end == len(arrays["rewards"]):
            return arrays
        return {key: value[:end] for key, value in arrays.items()}
