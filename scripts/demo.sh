#!/usr/bin/env bash
# The demo: set up .venv if needed, then run examples/quickstart.py
# (EMT on ~200 rattled Cu cells, 2 processes, results in examples/quickstart-output/).
# Extra arguments go to the example.
set -euo pipefail
# shellcheck source=scripts/_bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
wflp_bootstrap
cd "${WFLP_ROOT}"
python examples/quickstart.py "$@"
