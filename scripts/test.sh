#!/usr/bin/env bash
# Lint and test everything: set up .venv if needed, run ruff over the sources, mypy over
# the core and the strict documentation build (scripts/docs.sh), then pytest over tests/
# (the core) and each plugins/<name>/tests (one pytest run per distribution, so same-named
# test files in two plugins cannot clash).
# Extra arguments go to every pytest run, e.g.  bash scripts/test.sh -m "not slow" -x
# Exit status: 0 only if ruff and mypy are clean, the docs build and every test run passed.
set -euo pipefail
# shellcheck source=scripts/_bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
step_start=$(date +%s)
step_done() {  # where the time goes: one line per step (CI must stay under 20 minutes)
    local now
    now=$(date +%s)
    echo "== timing: $1 took $(( now - step_start )) s"
    step_start=${now}
}
wflp_bootstrap
step_done "the virtual environment (scripts/_bootstrap.sh)"
cd "${WFLP_ROOT}"

status=0

# -- lint -------------------------------------------------------------------------------
lint_paths=()
for p in core tests plugins benchmarks examples; do
    [[ -e "${p}" ]] && lint_paths+=("${p}")
done
echo "== ruff check ${lint_paths[*]}"
if ! ruff check "${lint_paths[@]}"; then
    echo "ruff found problems (fix them, or try: ruff check --fix ${lint_paths[*]})" >&2
    status=1
fi
step_done "ruff"
# the core's type hints, at the strictness stated in pyproject.toml [tool.mypy]
# (CONTRIBUTING.md, "Typing and layering"); the layering itself is tests/test_layering.py
echo "== mypy (core/wflp)"
if ! python -m mypy; then
    echo "mypy found type errors in core/wflp (CONTRIBUTING.md, \"Typing and layering\")" >&2
    status=1
fi
step_done "mypy"
# the documentation site and the API reference from the docstrings, built strictly
# (a broken link or cross-reference, a page not in the nav, an unreadable docstring)
echo "== docs (scripts/docs.sh)"
if ! bash scripts/docs.sh; then
    echo "the documentation does not build (run: bash scripts/docs.sh)" >&2
    status=1
fi
step_done "docs"

# -- tests ------------------------------------------------------------------------------
test_roots=()
[[ -d tests ]] && test_roots+=("tests")
while IFS= read -r d; do
    rel="${d#"${WFLP_ROOT}"/}"
    if [[ -d "${rel}/tests" ]]; then
        test_roots+=("${rel}/tests")
    else
        echo "warning: plugin ${rel} has no tests/ folder" >&2
    fi
done < <(wflp_plugin_dirs)

if [[ ${#test_roots[@]} -eq 0 ]]; then
    echo "error: no test folders found (expected tests/ and plugins/*/tests)" >&2
    exit 1
fi

# The core's tests are independent of each other (each has its own tmp_path and job
# store), so with pytest-xdist they run in two processes, a test file per process at a
# time; WFLP_TEST_WORKERS=0 runs them in one, and the plugin suites in one lane.
workers="${WFLP_TEST_WORKERS:-2}"
timings=()

reports="$(mktemp -d)"
trap 'rm -rf "${reports}"' EXIT

# Suites that mostly wait for their own service run beside the others (their output is
# shown when they end). WFLP_TEST_BESIDE lists them in groups separated by spaces; the
# suites of one group, joined by "+", run one after the other. Grid Engine's runs in its
# own network namespace and shares nothing; slurm, pbs and dask's SLURMCluster share the
# one test Slurm (a test holds all of its cores to make a job queue), so they take turns.
# WFLP_TEST_BESIDE="" runs every suite in turn.
beside_groups="${WFLP_TEST_BESIDE-plugins/wflp-sge/tests plugins/wflp-slurm/tests+plugins/wflp-pbs/tests+plugins/wflp-dask/tests}"
beside=" ${beside_groups//+/ } "
background=()

check_rc() {  # check_rc ROOT RC INDEX: what a pytest exit status means for the run
    local root=$1 rc=$2 idx=$3
    if [[ ${rc} -ne 0 && ${rc} -ne 1 && ${rc} -ne 5 ]]; then
        echo "error: pytest ${root} stopped before or while running tests (exit ${rc})" >&2
        status=1
        [[ -f "${reports}/${idx}.xml" ]] || : >"${reports}/${idx}.broken"
    elif [[ ${rc} -eq 5 ]]; then
        if [[ ${n_args} -gt 0 ]]; then
            echo "note: no test in ${root} matched the given options" >&2
        else
            echo "error: ${root} collected no tests" >&2
            status=1
        fi
    elif [[ ${rc} -ne 0 ]]; then
        status=1
    fi
}
n_args=$#

run_beside() {  # run_beside "IDX:ROOT IDX:ROOT ...": one group, in order, in the background
    local entry idx root suite_start rc
    for entry in $1; do
        idx=${entry%%:*}
        root=${entry#*:}
        suite_start=$(date +%s)
        rc=0
        echo "(started at $(date +%T))" >"${reports}/${idx}.log"
        python -m pytest "${root}" --junitxml="${reports}/${idx}.xml" --durations=8 \
            "${@:2}" >>"${reports}/${idx}.log" 2>&1 || rc=$?
        echo "${rc} $(( $(date +%s) - suite_start ))" >"${reports}/${idx}.rc"
    done
}

is_test_root() {
    local r
    for r in "${test_roots[@]}"; do [[ "${r}" == "$1" ]] && return 0; done
    return 1
}

# the suites beside the others start first, then the core, then the rest in turn
i=0
for group in ${beside_groups}; do
    entries=""
    for root in ${group//+/ }; do
        is_test_root "${root}" || continue   # e.g. a plugin this Python cannot install
        i=$((i + 1))
        entries+=" ${i}:${root}"
        background+=("${i}:${root}")
    done
    [[ -n "${entries}" ]] || continue
    echo "== pytest ${group//+/, then } (beside the other suites; output at the end)"
    run_beside "${entries}" "$@" &
done

ordered=()
for root in "${test_roots[@]}"; do
    [[ "${root}" != "tests" && "${beside}" != *" ${root} "* ]] && ordered+=("${root}")
done

run_suite() {  # run_suite ROOT [PYTEST ARGS...]: in the foreground, output as it comes
    local root=$1
    shift
    i=$((i + 1))
    echo "== pytest ${root} (started at $(date +%T))"
    local rc=0 suite_start
    suite_start=$(date +%s)
    python -m pytest "${root}" --junitxml="${reports}/${i}.xml" --durations=8 "$@" || rc=$?
    timings+=("$(( $(date +%s) - suite_start )) s  ${root}")
    check_rc "${root}" "${rc}" "${i}"
}

# the core first, on both cores: two pytest-xdist processes, a file at a time
if is_test_root tests; then
    parallel=()
    if [[ "${workers}" != "0" ]] && python -c "import xdist" 2>/dev/null; then
        parallel=(-n "${workers}" --dist loadfile)
    fi
    run_suite tests "${parallel[@]}" "$@"
fi

# then the plugin suites, in two lanes: every other one in a second lane beside the first
# (WFLP_TEST_WORKERS=0: one lane). Most are short and use one core; run one after the
# other they left the second core idle.
first_lane=()
second_lane=""
second_names=""
n=0
for root in "${ordered[@]}"; do
    n=$((n + 1))
    if [[ "${workers}" != "0" && $((n % 2)) -eq 0 ]]; then
        i=$((i + 1))
        second_lane+=" ${i}:${root}"
        second_names+=" ${root}"
        background+=("${i}:${root}")
    else
        first_lane+=("${root}")
    fi
done
if [[ -n "${second_lane}" ]]; then
    echo "== pytest${second_names} (a second lane, in turn; output at the end)"
    run_beside "${second_lane}" "$@" &
fi
for root in "${first_lane[@]}"; do
    run_suite "${root}" "$@"
done

for entry in "${background[@]}"; do
    idx=${entry%%:*}
    root=${entry#*:}
    while [[ ! -f "${reports}/${idx}.rc" ]]; do sleep 1; done
    read -r rc seconds <"${reports}/${idx}.rc"
    echo "== pytest ${root} (ran beside the others)"
    cat "${reports}/${idx}.log"
    timings+=("${seconds} s  ${root} (beside)")
    check_rc "${root}" "${rc}" "${idx}"
done
wait

echo "== time per test run (slowest first)"
printf '%s\n' "${timings[@]}" | sort -rn

# One closing line over all runs.
python - "${reports}" <<'PY'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

tests = failed = skipped = 0
for report in sorted(Path(sys.argv[1]).glob("*.xml")):
    for suite in ET.parse(report).getroot().iter("testsuite"):
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
# a pytest run that could not even start (e.g. a broken conftest) counts as one failure
broken = len(list(Path(sys.argv[1]).glob("*.broken")))
tests += broken
failed += broken
print(f"total: {tests - failed - skipped} passed, {failed} failed, {skipped} skipped")
PY

if [[ ${status} -ne 0 ]]; then
    echo "FAILED (see above)" >&2
fi
exit "${status}"
