"""Other agents inside the simulator: :mod:`.core` (real and imagined play, paired tables), :mod:`.cli`
(``policylens sim agents``), :mod:`.report` (markdown, figure, videos)."""
