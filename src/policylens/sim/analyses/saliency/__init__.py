"""Saliency through time: :mod:`.core` (gradients at every step), :mod:`.cli` (``policylens sim saliency``),
:mod:`.plots`."""
