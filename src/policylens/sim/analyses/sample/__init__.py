"""Imagined rollouts: :mod:`.cli` (``policylens sim sample``) on :mod:`policylens.sim.sample`."""
