"""A plugin whose import calls sys.exit(3), as a script's leftover main guard might."""

import sys

sys.exit(3)
