"""mkdocs hooks (mkdocs.yml `hooks:`): links from the docs to files of the repository.

The pages in docs/ link to files beside them in the repository (``../README.md``,
``../examples/quickstart.py``, ``../plugins/wflp-slurm/README.md``), which work where the
repository is browsed but are outside mkdocs' docs folder, so a strict build would
reject them as broken. Here each such link is checked: a target that exists in the
repository is copied into the site, verbatim, under ``repository/`` and the link is
pointed at the copy; a target that does not exist is a warning, which fails the strict
build like any other broken link.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.wflp")

#: where the copies of repository files go in the site
PREFIX = "repository"
#: a Markdown link or image target: ``](target)`` or ``](target "title")``
LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<rest>[^)]*)\)")
#: fenced code blocks, whose text is not links
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


class _RepositoryFile(File):
    """A repository file copied as is (a README stays Markdown text, not a page)."""

    def is_documentation_page(self) -> bool:
        """Never a page: mkdocs copies it instead of rendering it."""
        return False


def _outside_target(src_uri: str, target: str) -> str | None:
    """The path under the docs folder's parent that *target*, a link on the page
    *src_uri*, points to, if it leaves the docs folder; None for any other link."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("/", "#")):
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(src_uri), target))
    if not joined.startswith("../"):
        return None
    return joined[len("../"):]


def _links(markdown: str) -> list[re.Match[str]]:
    """The link matches of *markdown* outside fenced code blocks."""
    fences = [(m.start(), m.end()) for m in FENCE.finditer(markdown)]
    return [m for m in LINK.finditer(markdown)
            if not any(start <= m.start() < end for start, end in fences)]


def on_files(files: Files, config: Any) -> Files:
    """Add a copy of every repository file that a page links to, under ``repository/``."""
    root = Path(config.docs_dir).resolve().parent
    wanted: set[str] = set()
    for file in files.documentation_pages():
        text = Path(file.abs_src_path).read_text(encoding="utf-8")
        for match in _links(text):
            rel = _outside_target(file.src_uri, match["target"])
            if rel is not None and not rel.startswith("../") and (root / rel).is_file():
                wanted.add(rel)
    for rel in sorted(wanted):
        copy = _RepositoryFile(f"{PREFIX}/{rel}", src_dir=None, dest_dir=config.site_dir,
                               use_directory_urls=config.use_directory_urls)
        copy.abs_src_path = str(root / rel)
        files.append(copy)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point links to repository files at their copies; warn about those that are missing."""
    root = Path(config.docs_dir).resolve().parent
    src_uri = page.file.src_uri
    out: list[str] = []
    last = 0
    for match in _links(markdown):
        rel = _outside_target(src_uri, match["target"])
        if rel is None:
            continue
        if rel.startswith("../") or not (root / rel).is_file():
            log.warning("Doc file '%s' links to '%s', which is not a file of the repository "
                        "(%s)", src_uri, match["target"], root / rel)
            continue
        new = posixpath.relpath(f"{PREFIX}/{rel}", posixpath.dirname(src_uri) or ".")
        out.append(markdown[last:match.start()])
        out.append(f"]({new}{match['rest']})")
        last = match.end()
    out.append(markdown[last:])
    return "".join(out)
