#!/usr/bin/env bash
# Build the documentation site (mkdocs.yml: the user guide in docs/ and the API reference
# built from the docstrings) in strict mode, so that a broken link or cross-reference, a
# page missing from the nav, or a docstring griffe cannot read fails it.
#
#   bash scripts/docs.sh                      # check: build into a temporary folder, removed
#   WFLP_DOCS_SITE=site bash scripts/docs.sh  # keep the site in ./site (open site/index.html)
#   mkdocs serve                              # browse while editing (http://127.0.0.1:8000)
#
# Sets up .venv like the other scripts, and installs the `docs` extra of pyproject.toml
# (pinned mkdocs, mkdocstrings) into it when its tools are missing or not at those versions.
# Exit status: 0 only if the strict build succeeded.
set -euo pipefail
# shellcheck source=scripts/_bootstrap.sh
source "$(dirname "${BASH_SOURCE[0]}")/_bootstrap.sh"
# a site folder given relative to where the script was called from
site="${WFLP_DOCS_SITE:+$(realpath -m -- "${WFLP_DOCS_SITE}")}"
# mkdocs empties the site folder first: never one that holds something else
if [[ -n "${site}" && -d "${site}" && -n "$(ls -A -- "${site}")" \
        && ! -f "${site}/sitemap.xml" ]]; then
    echo "error: WFLP_DOCS_SITE=${WFLP_DOCS_SITE} is a folder with other files in it, which" \
         "the build would delete; name a new folder, or one an earlier build made" >&2
    exit 2
fi
wflp_bootstrap
cd "${WFLP_ROOT}"

# the docs extra's requirements that are not installed at the pinned version
mapfile -t missing < <(python - <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    import tomllib
except ImportError:  # Python < 3.11: tomli is a dependency of wflp there
    import tomli as tomllib

with open("pyproject.toml", "rb") as f:
    requirements = tomllib.load(f)["project"]["optional-dependencies"]["docs"]
for requirement in requirements:
    name, _, pinned = requirement.partition("==")
    try:
        have = version(name.split("[")[0])
    except PackageNotFoundError:
        have = None
    if have is None or (pinned and have != pinned):
        print(requirement)
PY
)
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "[wflp docs] installing the docs extra into ${WFLP_VENV}: ${missing[*]}" >&2
    python -m pip install --quiet "${missing[@]}"
fi

if [[ -z "${site}" ]]; then
    site="$(mktemp -d)"
    trap 'rm -rf "${site}"' EXIT
fi
echo "== mkdocs build --strict (site: ${site})"
python -m mkdocs build --strict --clean --site-dir "${site}"
