"""Generative visualisation: :mod:`.core` (latent optimisation), :mod:`.cli` (``policylens sim optimize``), :mod:`.plots`."""
