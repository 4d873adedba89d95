#!/usr/bin/env bash
# Run tests on a deliberately slow machine: one CPU-bound hog per core beside pytest, so that
# a test that depends on the machine's speed (a sleep instead of a wait, a race with another
# process) fails here rather than some day in CI.
#
#   bash scripts/stress.sh                           # the core tests (tests/)
#   bash scripts/stress.sh tests/test_faults.py -x   # arguments go to pytest as they are
#   bash scripts/stress.sh plugins/wflp-slurm/tests
#
# Environment:
#   WFLP_STRESS_HOGS          how many hogs (default: one per core, `nproc`); 4 per core
#                             is about the load of CI sharing 2 cores with other work
#   WFLP_TEST_TIMEOUT_SCALE   how much longer every test deadline is (default here: 3; read
#                             by wflp.testing.scaled). Deadlines only catch hangs: what this
#                             run looks for is a test that fails when the machine is slow
#                             although nothing hangs.
# The hogs are killed when the script ends, however it ends. Exit status: pytest's.
set -euo pipefail
# shellcheck source=scripts/_bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
wflp_bootstrap
cd "${WFLP_ROOT}"

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
    python -c 'while True: pass' &
    hog_pids+=("$!")
done

echo "== stress: ${hogs} CPU hog(s) on $(nproc) core(s), WFLP_TEST_TIMEOUT_SCALE=${WFLP_TEST_TIMEOUT_SCALE}"
echo "== pytest ${*:-(testpaths: tests)}"
rc=0
python -m pytest "$@" || rc=$?
echo "== stress: pytest exited with ${rc}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit "${rc}"
