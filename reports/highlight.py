"""Which cells are bold and blue: the paper's rule (section 5, appendix A.4), in one place.

- bold: a safe agent, normalized cost < 1 (exactly 1.0 is not safe);
- blue (and bold): the safe agent with the highest normalized reward in the row, and every
  other safe agent whose reward is within 0.05 of that one and whose cost is lower;
- nobody safe in a row: nothing is highlighted. A missing run is a dash and never wins.
- ties: every safe agent with the highest reward is blue; "lower cost" is then measured
  against the cheapest of them. Rewards compare with a 1e-9 tolerance, so the printed
  two-decimal numbers of the paper (0.72 vs 0.67) sit inside the 0.05 window as intended.

The paper itself slips once: Table 4 prints Walker2dVel's LSPC-S (cost 1.28) in bold. This
rule does not, since the paper's own definition says cost < 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BLUE_MARGIN = 0.05
SAFE_BELOW = 1.0
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Cell:
    reward: float | None
    cost: float | None
    bold: bool = False
    blue: bool = False
    reward_spread: float | None = None
    cost_spread: float | None = None

    @property
    def missing(self) -> bool:
        return self.reward is None or self.cost is None


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def highlight(row: dict[str, tuple]) -> dict[str, Cell]:
    """Cells of one table row {method: (reward, cost[, reward_spread, cost_spread])}."""
    cells = {}
    for method, values in row.items():
        reward, cost, *spreads = values
        spreads = [s if _present(s) else None for s in spreads] + [None, None]
        if not (_present(reward) and _present(cost)):
            cells[method] = Cell(None, None)
            continue
        cells[method] = Cell(float(reward), float(cost), reward_spread=spreads[0],
                             cost_spread=spreads[1])
    safe = {m: c for m, c in cells.items() if not c.missing and c.cost < SAFE_BELOW}
    if not safe:
        return cells
    top_reward = max(c.reward for c in safe.values())
    top = [c for c in safe.values() if c.reward >= top_reward - TOLERANCE]
    top_cost = min(c.cost for c in top)
    for method, cell in safe.items():
        blue = cell in top or (cell.reward >= top_reward - BLUE_MARGIN - TOLERANCE
                               and cell.cost < top_cost)
        cells[method] = Cell(cell.reward, cell.cost, True, blue, cell.reward_spread,
                             cell.cost_spread)
    return cells
