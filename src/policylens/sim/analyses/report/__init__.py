"""The report of what the sim commands found: :mod:`.core` (markdown lines), :mod:`.cli` (``policylens sim report``)."""
