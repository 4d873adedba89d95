"""A plugin whose import raises KeyboardInterrupt (as a Ctrl-C during its import would)."""

raise KeyboardInterrupt
