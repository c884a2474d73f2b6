"""Fidelity on held-out episodes: :mod:`.core` (scores), :mod:`.cli` (``policylens sim fidelity``), :mod:`.plots`,
:mod:`.reroll` (the environment drawn again from a window's start), :mod:`.closed_loop` (agreement when the agent
drives)."""
