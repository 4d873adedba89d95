#!/usr/bin/env bash
# The demo: set up .venv if needed (wflp and the plugins the demo uses: xtb, smiles,
# soap, gap, plots; no torch), then run examples/mlip_from_smiles.py: the wfl paper's
# workflow, a GAP potential from SMILES with GFN2-xTB as reference, results in
# examples/mlip-output/. Run it twice: the second run reuses every step.
# Extra arguments go to the example (--fitter ace, --processes N, --out DIR ...);
# `bash scripts/demo.sh quickstart` runs the smaller EMT quickstart instead.
set -euo pipefail
# shellcheck source=scripts/_bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
wflp_bootstrap demo
cd "${WFLP_ROOT}"
if [[ "${1:-}" == "quickstart" ]]; then
    shift
    python examples/quickstart.py "$@"
else
    python examples/mlip_from_smiles.py "$@"
fi
