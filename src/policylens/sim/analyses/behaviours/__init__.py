"""Behaviours: :mod:`.core` (Jacobians, cross-correlation, clusters), :mod:`.cli` (``policylens sim behaviours``),
:mod:`.plots`."""
