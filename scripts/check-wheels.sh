#!/usr/bin/env bash
# Check the distributions as users get them: build an sdist and a wheel (from the sdist) of
# wflp and of every plugins/*/ (python -m build) into a temporary wheelhouse, check what the
# wheels hold, install wflp and three plugins from that wheelhouse into a fresh virtual
# environment outside the tree, and use them from a folder outside the tree: wflp
# list-plugins, a SMILES -> xTB -> EMT -> parity-plot chain, and a stale plugin that must be
# listed as incompatible. CI runs it after the tests (.ci/run).
#
#   bash scripts/check-wheels.sh            # exit 0 only if every check passed
#
# Environment:
#   PYTHON            the interpreter of the build and test environments (default python3)
#   WFLP_BUILD_JOBS   builds run at once (default 2)
#   WFLP_KEEP_WHEELS  1: keep the temporary folder (wheelhouse, venvs, logs); it is kept
#                     anyway when a check fails, and its path is printed
# Needs access to PyPI: the build tools and the third-party dependencies come from there;
# wflp's own distributions come only from the wheelhouse (pip --no-index).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
INSTALL=(wflp-xtb wflp-smiles wflp-plots)   # pip-only backends: tblite, RDKit, matplotlib
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { printf '[check-wheels] %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
run_logged() {  # run_logged LOG CMD...: the command's output goes to LOG, shown on failure
    local logfile="$1"
    shift
    if ! "$@" >"${logfile}" 2>&1; then
        tail -n 40 "${logfile}" >&2
        fail "$* (whole log: ${logfile})"
    fi
}

command -v "${PYTHON}" >/dev/null || fail "cannot find ${PYTHON}; set PYTHON=/path/to/python3"
git -C "${ROOT}" rev-parse --is-inside-work-tree >/dev/null 2>&1 \
    || fail "${ROOT} is not a git work tree (the sources are taken from git ls-files)"

work="$(mktemp -d "${TMPDIR:-/tmp}/wflp-wheels.XXXXXX")"
chmod 700 "${work}"
finish() {
    local rc=$?
    if [[ ${rc} -ne 0 || "${WFLP_KEEP_WHEELS:-0}" == "1" ]]; then
        say "kept ${work}"
    else
        rm -rf "${work}"
    fi
}
trap finish EXIT
start=$(date +%s)
mkdir -p "${work}/src" "${work}/wheelhouse" "${work}/logs" "${work}/run"
wheelhouse="${work}/wheelhouse"

# -- the sources: what a clone has (tracked and new files, nothing ignored) ----------------
projects=(.)
for d in "${ROOT}"/plugins/*/; do
    d="${d%/}"
    [[ -f "${d}/pyproject.toml" ]] && projects+=("plugins/${d##*/}")
done
existing_files() {  # NUL-separated paths git knows or would add, that exist, under "$@"
    local f
    git ls-files -z -co --exclude-standard -- "$@" | while IFS= read -r -d '' f; do
        [[ -e "${f}" ]] && printf '%s\0' "${f}"
    done
}
for p in "${projects[@]}"; do
    if [[ "${p}" == "." ]]; then  # the core: the repository without the plugins
        dest="${work}/src/core-dist"
        spec=(. ':!plugins')
    else
        dest="${work}/src/${p}"
        spec=(.)
    fi
    mkdir -p "${dest}"
    (cd "${ROOT}/${p}" && existing_files "${spec[@]}" | tar --null -T - -cf -) \
        | tar -xf - -C "${dest}"
done

# -- build tools: one venv with build and the union of the declared build requirements -----
say "build tools into ${work}/tools"
run_logged "${work}/logs/tools-venv.log" "${PYTHON}" -m venv "${work}/tools"
tools="${work}/tools/bin/python"
run_logged "${work}/logs/tools.log" "${tools}" -m pip install build "tomli; python_version < '3.11'"
mapfile -t build_requires < <("${tools}" - "${work}/src"/core-dist "${work}/src"/plugins/* <<'PY'
import sys
try:
    import tomllib
except ImportError:
    import tomli as tomllib
seen = []
for d in sys.argv[1:]:
    with open(f"{d}/pyproject.toml", "rb") as f:
        system = tomllib.load(f).get("build-system", {})
    for req in system.get("requires", ["setuptools>=40.8.0"]):
        if req not in seen:
            seen.append(req)
print("\n".join(seen))
PY
)
run_logged "${work}/logs/build-requires.log" "${tools}" -m pip install --upgrade "${build_requires[@]}"

# -- sdists and wheels ------------------------------------------------------------------
# --no-isolation: the tools venv holds every declared build requirement (above), so one
# environment serves all the builds instead of two fresh ones per distribution; two at once
say "building ${#projects[@]} sdists and wheels (build requirements: ${build_requires[*]})"
build_start=$(date +%s)
build_one() {  # build_one SRC: sdist, then the wheel from it; the log's end if it fails
    local logfile="${work}/logs/build-${1##*/}.log"
    "${tools}" -m build --no-isolation --outdir "${wheelhouse}" "$1" >"${logfile}" 2>&1 \
        || { tail -n 30 "${logfile}" >&2; say "cannot build ${1##*/} (log: ${logfile})"; return 1; }
}
export -f build_one say
export tools wheelhouse work
printf '%s\0' "${work}/src"/core-dist "${work}/src"/plugins/* \
    | xargs -0 -n 1 -P "${WFLP_BUILD_JOBS:-2}" bash -c 'build_one "$1"' _ \
    || fail "building the distributions (above)"
build_s=$(( $(date +%s) - build_start ))

# -- what the distributions hold ---------------------------------------------------------
"${tools}" - "${ROOT}" "${wheelhouse}" "${work}/src"/core-dist "${work}/src"/plugins/* <<'PY' \
    || fail "the distributions in ${wheelhouse} are not as they should be (above)"
import importlib.util
import re
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

root, wheelhouse, sources = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
spec = importlib.util.spec_from_file_location("compat", root / "core/wflp/plugins/compat.py")
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
problems = []
core_init = (root / "core/wflp/__init__.py").read_text()
core_version = re.search(r'(?m)^__version__ = "([^"]+)"$', core_init).group(1)
for src in map(Path, sources):
    pkg_dir = src / "core" / "wflp" if src.name == "core-dist" else next(
        p.parent for p in (src / "src").glob("*/__init__.py"))
    version = re.search(r'(?m)^__version__ = "([^"]+)"$',
                        (pkg_dir / "__init__.py").read_text()).group(1)
    dist = "wflp" if src.name == "core-dist" else src.name
    norm = dist.replace("-", "_")
    wheels = list(wheelhouse.glob(f"{norm}-*.whl"))
    sdists = list(wheelhouse.glob(f"{norm}-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        problems.append(f"{dist}: expected one wheel and one sdist, found "
                        f"{[p.name for p in wheels + sdists]}")
        continue
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(whl.read(meta_name).decode())
        eps = next((whl.read(n).decode() for n in names
                    if n.endswith(".dist-info/entry_points.txt")), "")
    if meta["Version"] != version:
        problems.append(f"{wheels[0].name}: version {meta['Version']}, but "
                        f"{pkg_dir.name}.__version__ is {version}")
    tests = sorted({n for n in names if "tests" in n.split("/")[:-1]})
    if tests:
        problems.append(f"{wheels[0].name} holds tests: {tests[:3]}")
    if (pkg_dir / "py.typed").exists() and f"{pkg_dir.name}/py.typed" not in names:
        problems.append(f"{wheels[0].name} lacks {pkg_dir.name}/py.typed (the source has it)")
    if not any(n.startswith(f"{pkg_dir.name}/") and n.endswith(".py") for n in names):
        problems.append(f"{wheels[0].name} holds no module of {pkg_dir.name}")
    if dist != "wflp":
        need = compat.core_requirement(meta.get_all("Requires-Dist") or [])
        if need is None or compat.specifier_contains(need, core_version) is not True:
            problems.append(f"{wheels[0].name}: requires wflp{need}, which excludes the "
                            f"core it was built with ({core_version})")
        if "[wflp]" not in eps:
            problems.append(f"{wheels[0].name}: no [wflp] entry point")
    with tarfile.open(sdists[0]) as sd:
        members = sd.getnames()
    if not any(m.endswith("/pyproject.toml") and m.count("/") == 1 for m in members):
        problems.append(f"{sdists[0].name} has no pyproject.toml at its top")
    print(f"[check-wheels] {wheels[0].name}: {len(names)} files; {sdists[0].name}: "
          f"{len(members)} members", file=sys.stderr)
for p in problems:
    print(f"[check-wheels] {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# -- a fresh venv outside the tree, as a user would install -------------------------------
say "installing wflp ${INSTALL[*]} into a fresh venv (ours from the wheelhouse only)"
install_start=$(date +%s)
venv="${work}/venv"
run_logged "${work}/logs/venv.log" "${PYTHON}" -m venv "${venv}"
vpip=("${venv}/bin/python" -m pip)   # the pip venv gives, as a user's; no .pyc up front
run_logged "${work}/logs/install-ours.log" "${vpip[@]}" install --no-compile --no-index \
    --find-links "${wheelhouse}" --no-deps wflp "${INSTALL[@]}"
run_logged "${work}/logs/install-deps.log" "${vpip[@]}" install --no-compile \
    --find-links "${wheelhouse}" wflp "${INSTALL[@]}"
run_logged "${work}/logs/pip-check.log" "${vpip[@]}" check
install_s=$(( $(date +%s) - install_start ))

# -- use it from outside the tree ----------------------------------------------------------
cd "${work}/run"
unset PYTHONPATH WFLP_LOAD_PLUGINS VIRTUAL_ENV
export PATH="${venv}/bin:${PATH}" WFLP_HOME="${work}/wflp-home" WFLP_PROGRESS=0
export WFLP_STRICT_PLUGINS=1        # a plugin that fails to load fails the check
core_version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "${ROOT}/core/wflp/__init__.py")"

[[ "$(wflp --version)" == "wflp ${core_version}" ]] \
    || fail "wflp --version says '$(wflp --version)', expected 'wflp ${core_version}'"
run_logged "${work}/logs/where.log" python -c "
import sys, wflp, wflp_xtb, wflp_smiles, wflp_plots
for m in (wflp, wflp_xtb, wflp_smiles, wflp_plots):
    assert m.__file__.startswith(sys.prefix), f'{m.__name__} imported from {m.__file__}'
    assert not m.__file__.startswith('${ROOT}/'), f'{m.__name__} is the source tree'
"
wflp list-plugins
wflp list-plugins --json >plugins.json
python - "${INSTALL[@]}" <<'PY' || fail "wflp list-plugins does not list the installed plugins"
import json
import sys

records = {r["distribution"]: r for r in json.load(open("plugins.json"))}
expected = {"wflp-xtb": ("calculators", "xtb"), "wflp-smiles": ("generators", "smiles"),
            "wflp-plots": ("commands", None)}
bad = []
for dist in sys.argv[1:]:
    r = records.get(dist)
    kind, name = expected[dist]
    if r is None or r["status"] != "ok" or kind not in r["registered"] or (
            name and name not in r["registered"][kind]):
        bad.append(f"{dist}: {r}")
print("\n".join(bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY

say "SMILES -> 3D (wflp-smiles) -> GFN2-xTB (wflp-xtb) -> EMT (wflp) -> parity plot (wflp-plots)"
python -c "
import ase.io
from ase import Atoms
ase.io.write('molecules.xyz', [Atoms(info={'smiles': s}) for s in ('CCO', 'O')])"
run_logged "${work}/logs/smiles.log" wflp run generator smiles -i molecules.xyz -o mols.xyz --seed 1
run_logged "${work}/logs/xtb.log" wflp run calculator xtb -i mols.xyz -o xtb.xyz --prefix xtb_
run_logged "${work}/logs/emt.log" wflp run calculator emt -i xtb.xyz -o both.xyz --prefix emt_
run_logged "${work}/logs/parity.log" wflp parity xtb_ emt_ both.xyz -o parity.png
python - <<'PY' || fail "the chain's outputs are not what they should be"
import math
import os

import ase.io

frames = ase.io.read("both.xyz", ":")
assert [a.info["smiles"] for a in frames] == ["CCO", "O"], [a.info for a in frames]
assert [a.get_chemical_formula() for a in frames] == ["C2H6O", "H2O"]
for a in frames:
    for key in ("xtb_energy", "emt_energy"):
        assert math.isfinite(a.info[key]), (key, a.info)
    assert a.arrays["xtb_forces"].shape == (len(a), 3)
# GFN2-xTB total energies of small molecules are large and negative (tens to hundreds of eV)
assert all(a.info["xtb_energy"] < -100 for a in frames), [a.info["xtb_energy"] for a in frames]
for out in ("mols.xyz", "xtb.xyz", "both.xyz"):
    assert os.path.exists(f"{out}.record.json"), f"{out} has no record"
with open("parity.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n", "parity.png is not a PNG"
PY

say "a plugin made for another wflp: listed as incompatible, in one line, not imported"
site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir "${site}/wflp_stale-1.0.dist-info"
printf 'Metadata-Version: 2.1\nName: wflp-stale\nVersion: 1.0\nRequires-Dist: wflp<%s\n' \
    "${core_version}" >"${site}/wflp_stale-1.0.dist-info/METADATA"
printf '[wflp]\nstale = wflp_stale\n' >"${site}/wflp_stale-1.0.dist-info/entry_points.txt"
printf 'raise RuntimeError("wflp_stale must not be imported")\n' >"${site}/wflp_stale.py"
WFLP_STRICT_PLUGINS=0 wflp list-plugins >stale.out 2>stale.err \
    || { cat stale.out stale.err >&2; fail "wflp list-plugins failed with a stale plugin"; }
grep -q '^wflp-stale  *1.0  *incompatible' stale.out \
    && [[ "$(grep -c "wflp-stale \[stale = wflp_stale\]: incompatible: it needs wflp<${core_version} but this is wflp ${core_version}" stale.out)" == 1 ]] \
    && ! grep -q Traceback stale.out stale.err \
    || { cat stale.out stale.err >&2; fail "the stale plugin is not listed as incompatible"; }
rm -r "${site}/wflp_stale-1.0.dist-info" "${site}/wflp_stale.py"

say "passed: ${#projects[@]} sdists and wheels built in ${build_s} s, installed in ${install_s} s, all in $(( $(date +%s) - start )) s"
