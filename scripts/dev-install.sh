#!/usr/bin/env bash
# Install wflp and every first-party plugin (plugins/*/) editable, with their
# test extras, into a virtual environment at .venv (created if missing).
# Safe to rerun: it reinstalls only when a pyproject.toml changed
# (WFLP_REINSTALL=1 forces it).
set -euo pipefail
# shellcheck source=scripts/_bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
wflp_bootstrap
# the commit-msg hook holds subjects to 72 characters (CONTRIBUTING.md); an engineer's own
# hooksPath is left as it is
if git -C "${WFLP_ROOT}" rev-parse --is-inside-work-tree >/dev/null 2>&1 \
        && [[ -z "$(git -C "${WFLP_ROOT}" config --get core.hooksPath || true)" ]]; then
    git -C "${WFLP_ROOT}" config core.hooksPath .githooks
fi
python -m pip list 2>/dev/null | grep -i '^wflp' || true
echo "Ready. Activate with:  source ${WFLP_VENV}/bin/activate"
