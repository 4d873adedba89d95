#!/usr/bin/env bash
# Run tests on a deliberately slow machine: one CPU-bound hog per core beside pytest, so that
# a test that depends on the machine's speed (a sleep instead of a wait, a race with another
# process) fails here rather than some day in CI.
#
#   bash scripts/stress.sh                           # the core tests (tests/)
#   bash scripts/stress.sh tests/test_faults.py -x   # arguments go to pytest as they are
#   bash scripts/stress.sh plugins/wflp-slurm/tests
#   bash scripts/stress.sh --run bash .ci/run        # any command instead of pytest: the
#                                                    # whole CI on a fresh clone, say
#
# Environment:
#   WFLP_STRESS_HOGS          how many hogs (default: one per core, `nproc`); 4 per core
#                             is about the load of CI sharing 2 cores with other work
#   WFLP_TEST_TIMEOUT_SCALE   how much longer every test deadline is (default here: 3; read
#                             by wflp.testing.scaled). Deadlines only catch hangs: what this
#                             run looks for is a test that fails when the machine is slow
#                             although nothing hangs.
# The hogs are killed when the script ends, however it ends. Exit status: pytest's (the
# command's with --run).
set -euo pipefail
command=()
if [[ "${1:-}" == "--run" ]]; then
    shift
    if [[ $# -eq 0 ]]; then
        echo "error: --run needs a command to run beside the hogs, e.g. --run bash .ci/run" >&2
        exit 2
    fi
    command=("$@")
    hog_python="$(command -v python3 || command -v python)"   # no venv needed for a hog
else
    # shellcheck source=scripts/_bootstrap.sh
    source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
    wflp_bootstrap
    cd "${WFLP_ROOT}"
    command=(python -m pytest "$@")
    hog_python=python
fi

hogs="${WFLP_STRESS_HOGS:-$(nproc)}"
if ! [[ "${hogs}" =~ ^[0-9]+$ ]]; then
    echo "error: WFLP_STRESS_HOGS must be a whole number of processes, got '${hogs}'" >&2
    exit 2
fi
export WFLP_TEST_TIMEOUT_SCALE="${WFLP_TEST_TIMEOUT_SCALE:-3}"

hog_pids=()
stop_hogs() {
    local pid
    for pid in "${hog_pids[@]}"; do
        kill "${pid}" 2>/dev/null || true
    done
    for pid in "${hog_pids[@]}"; do
        wait "${pid}" 2>/dev/null || true
    done
}
trap stop_hogs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ((i = 0; i < hogs; i++)); do
    "${hog_python}" -c 'while True: pass' &
    hog_pids+=("$!")
done

echo "== stress: ${hogs} CPU hog(s) on $(nproc) core(s), WFLP_TEST_TIMEOUT_SCALE=${WFLP_TEST_TIMEOUT_SCALE}"
echo "== ${command[*]}"
rc=0
"${command[@]}" || rc=$?
echo "== stress: ${command[0]} exited with ${rc}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit "${rc}"
