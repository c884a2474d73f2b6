"""Hidden-state direction swaps: :mod:`.core` (swaps, random control, paired comparisons), :mod:`.cli`
(``policylens sim swap``), :mod:`.plots` (rates by cause), :mod:`.report` (markdown tables)."""
