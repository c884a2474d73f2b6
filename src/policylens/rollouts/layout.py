"""Names in a rollouts store shared by the store (:mod:`.store`), its writer and its integrity checks
(:mod:`.integrity`): the per-episode index fields and the two arrays that hold the env states' bytes."""
from __future__ import annotations

INDEX_FIELDS: dict[str, str | type] = {"start": "int64", "length": "int64", "level_seed": "int64", "return": "float64", "cause": str}
STATE_DATA, STATE_END = "env_state_data", "env_state_end"
