# shellcheck shell=bash
# Sourced by the scripts in this folder: makes sure a virtual environment with
# wflp and its first-party plugins exists, then activates it. Not meant to be run
# directly.
#
#   wflp_bootstrap        every plugin, editable, with test extras (tests, development);
#                         torch is installed first, alone ($WFLP_TORCH), so that
#                         mace-torch finds it instead of pulling PyPI's CUDA build
#   wflp_bootstrap demo   only what the demo needs: wflp and the plugins in
#                         WFLP_DEMO_PLUGINS, editable, without test extras (no torch)
#
# Environment:
#   WFLP_VENV       where the virtual environment lives (default: <repo>/.venv)
#   PYTHON          the interpreter that creates it (default: python3)
#   WFLP_REINSTALL  set to 1 to reinstall even if nothing changed
#   WFLP_TORCH      the torch requirement installed before the plugins (default
#                   torch==2.13.0, a CPU build where one is offered)

set -euo pipefail

WFLP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WFLP_VENV="${WFLP_VENV:-${WFLP_ROOT}/.venv}"
PYTHON="${PYTHON:-python3}"
WFLP_TORCH="${WFLP_TORCH:-torch==2.13.0}"
WFLP_DEMO_PLUGINS=(wflp-xtb wflp-smiles wflp-soap wflp-gap wflp-plots)
export PIP_NO_INPUT=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

_wflp_log() { printf '[wflp setup] %s\n' "$*" >&2; }

# The first-party plugins: every plugins/<name>/ that is a Python project and whose
# requires-python the interpreter meets (the venv's, else $PYTHON). The others are
# skipped with one line saying why (wflp-dask needs Python >= 3.10; wflp needs 3.9).
# wflp_bootstrap decides once and keeps the answer in WFLP_PLUGIN_DIRS.
wflp_plugin_dirs() {
    if [[ -n "${WFLP_PLUGIN_DIRS+set}" ]]; then
        [[ -z "${WFLP_PLUGIN_DIRS}" ]] || printf '%s\n' "${WFLP_PLUGIN_DIRS}"
        return 0
    fi
    local d
    local -a dirs=()
    for d in "${WFLP_ROOT}"/plugins/*/; do
        d="${d%/}"
        if [[ -f "${d}/pyproject.toml" || -f "${d}/setup.py" ]]; then
            dirs+=("${d}")
        fi
    done
    [[ ${#dirs[@]} -gt 0 ]] || return 0
    local py="${WFLP_VENV}/bin/python"
    [[ -x "${py}" ]] || py="${PYTHON}"
    # the specifier is read by wflp's own (stdlib-only) compat module, loaded by path
    # because wflp may not be installed yet; if that fails, every plugin is kept
    "${py}" - "${WFLP_ROOT}/core/wflp/plugins/compat.py" "${dirs[@]}" <<'PY' \
        || printf '%s\n' "${dirs[@]}"
import importlib.util
import platform
import re
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("_wflp_compat", sys.argv[1])
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
here = platform.python_version()
keep = []
for d in sys.argv[2:]:
    toml = Path(d, "pyproject.toml")
    text = toml.read_text(encoding="utf-8") if toml.is_file() else ""
    m = re.search(r"""(?m)^\s*requires-python\s*=\s*["']([^"']*)["']""", text)
    if m and compat.specifier_contains(m.group(1), here) is False:
        print(f"[wflp setup] skipping {Path(d).name}: it requires Python {m.group(1)}, "
              f"and {sys.executable} is Python {here}", file=sys.stderr)
    else:
        keep.append(d)
print("\n".join(keep))
PY
}

# A digest of everything that decides what gets installed: when it changes,
# the environment is brought up to date again.
_wflp_install_digest() {
    local f
    {
        "${WFLP_VENV}/bin/python" -c 'import sys; print(sys.version)'
        for f in "${WFLP_ROOT}/pyproject.toml" "${WFLP_ROOT}"/plugins/*/pyproject.toml \
                 "${WFLP_ROOT}"/plugins/*/setup.py "${WFLP_ROOT}"/plugins/*/setup.cfg; do
            if [[ -f "${f}" ]]; then
                printf '%s\n' "${f#"${WFLP_ROOT}"/}"
                cat "${f}"
            fi
        done
        # versions live in the packages (CONTRIBUTING.md, Versions): a bump reinstalls,
        # so that the installed metadata says the new version
        grep -H '^__version__' "${WFLP_ROOT}/core/wflp/__init__.py" \
            "${WFLP_ROOT}"/plugins/*/src/*/__init__.py 2>/dev/null || true
    } | "${WFLP_VENV}/bin/python" -c \
        'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

# The union of the [build-system] requires of wflp and its plugins, one per line. They are
# installed into the venv once, and the editable installs then build without isolation:
# one isolated build environment per distribution (20 of them) cost about 35 s of the
# CI's set-up. Prints nothing if it cannot tell (the installs then keep their isolation).
_wflp_build_requires() {
    "${WFLP_VENV}/bin/python" - "$@" <<'PY' 2>/dev/null || true
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

requires = []
for path in sys.argv[1:]:
    toml = Path(path, "pyproject.toml") if Path(path).is_dir() else Path(path)
    with open(toml, "rb") as fd:
        system = tomllib.load(fd).get("build-system")
    if system is None or system.get("build-backend", "").startswith("setuptools.build_meta:__legacy__"):
        sys.exit(1)  # a legacy build: keep the isolation
    for req in system.get("requires", []):
        if req not in requires:
            requires.append(req)
print("\n".join(requires))
PY
}

# pip install EDITABLE_TARGETS...: the build requirements first, then the distributions
# built without isolation; with isolation if the requirements are unknown
_wflp_pip_install_editable() {
    local -a dirs=() requires=()
    local arg
    for arg in "$@"; do
        [[ "${arg}" == "-e" ]] || dirs+=("${arg%%\[*}")
    done
    mapfile -t requires < <(_wflp_build_requires "${dirs[@]}")
    if [[ ${#requires[@]} -gt 0 ]] \
            && "${WFLP_VENV}/bin/python" -m pip install --quiet "${requires[@]}"; then
        "${WFLP_VENV}/bin/python" -m pip install --quiet --no-build-isolation "$@"
    else
        "${WFLP_VENV}/bin/python" -m pip install --quiet "$@"
    fi
}

wflp_bootstrap() {
    if [[ ! -x "${WFLP_VENV}/bin/python" ]] || ! "${WFLP_VENV}/bin/python" -c 'import sys' 2>/dev/null; then
        if ! command -v "${PYTHON}" >/dev/null 2>&1; then
            _wflp_log "cannot find ${PYTHON}; install Python >= 3.9 or set PYTHON=/path/to/python3"
            return 1
        fi
        _wflp_log "creating a virtual environment in ${WFLP_VENV}"
        rm -rf "${WFLP_VENV}"
        if ! "${PYTHON}" -m venv "${WFLP_VENV}"; then
            _wflp_log "'${PYTHON} -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv"
            return 1
        fi
        "${WFLP_VENV}/bin/python" -m pip install --quiet --upgrade pip
    fi

    local mode="${1:-all}"
    unset WFLP_PLUGIN_DIRS
    WFLP_PLUGIN_DIRS="$(wflp_plugin_dirs)"
    local stamp="${WFLP_VENV}/.wflp-install-digest"
    local demo_stamp="${WFLP_VENV}/.wflp-install-digest-demo"
    local digest
    digest="$(_wflp_install_digest)"
    if [[ "${WFLP_REINSTALL:-0}" != "1" && -f "${stamp}" && "$(cat "${stamp}")" == "${digest}" ]]; then
        _wflp_log "environment ${WFLP_VENV} is up to date"
    elif [[ "${mode}" == "demo" && "${WFLP_REINSTALL:-0}" != "1" && -f "${demo_stamp}" \
            && "$(cat "${demo_stamp}")" == "${digest}" ]]; then
        _wflp_log "environment ${WFLP_VENV} is up to date (demo plugins)"
    elif [[ "${mode}" == "demo" ]]; then
        local -a targets=(-e "${WFLP_ROOT}")
        local name
        for name in "${WFLP_DEMO_PLUGINS[@]}"; do
            targets+=(-e "${WFLP_ROOT}/plugins/${name}")
        done
        _wflp_log "installing into ${WFLP_VENV}: wflp ${WFLP_DEMO_PLUGINS[*]} (the demo's; bash scripts/dev-install.sh installs all)"
        _wflp_pip_install_editable "${targets[@]}"
        printf '%s\n' "${digest}" >"${demo_stamp}"
    else
        local -a targets=(-e "${WFLP_ROOT}[test]")
        local d
        while IFS= read -r d; do
            targets+=(-e "${d}[test]")
        done < <(wflp_plugin_dirs)
        if [[ -d "${WFLP_ROOT}/plugins/wflp-mace" ]]; then
            _wflp_log "installing ${WFLP_TORCH} first (mace-torch then uses it)"
            "${WFLP_VENV}/bin/python" -m pip install --quiet "${WFLP_TORCH}"
        fi
        _wflp_log "installing into ${WFLP_VENV}: wflp$(wflp_plugin_dirs | sed 's|.*/| |' | tr -d '\n')"
        _wflp_pip_install_editable "${targets[@]}"
        printf '%s\n' "${digest}" >"${stamp}"
    fi

    # shellcheck disable=SC1091
    source "${WFLP_VENV}/bin/activate"
}
