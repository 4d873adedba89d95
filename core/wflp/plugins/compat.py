"""Which wflp a plugin was made for: its declared requirement on ``wflp``, checked
against the running core before the plugin is imported.

A plugin distribution declares the cores it works with in its dependencies
(``wflp>=0.1,<0.2``). After ``pip install -U wflp`` an older plugin may stay behind;
the manager then lists it as ``incompatible`` with one line saying what to install,
instead of importing it and failing somewhere inside.

``packaging`` is not a dependency of wflp, so the PEP 440 versions and specifiers are
read here (the subset a ``Requires-Dist`` holds: ``== != <= >= < > ~= ===`` and
``==X.*``). Anything this cannot read answers "cannot tell" (None), and such a plugin
is loaded as before: the check refuses only what it knows to be excluded. A running
pre-release of wflp counts as installed on purpose (pre-releases are allowed). This
module imports only the standard library, so scripts/_bootstrap.sh loads it by path
(before wflp's dependencies are installed) to check plugins' ``requires-python``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple, Optional

CORE_DISTRIBUTION = "wflp"

# PEP 440, appendix B (the permissive form: normalisation accepted)
_VERSION = re.compile(
    r"""^\s*v?
    (?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?P<pre>[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?P<post>(?:-(?P<post_n1>[0-9]+))
        |(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?
    (?P<dev>[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
_SPECIFIER = re.compile(r"^\s*(===|~=|==|!=|<=|>=|<|>)\s*(\S+?)\s*$")
_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[[^\]]*\])?\s*(?P<rest>[^;]*?)\s*(?:;(?P<marker>.*))?$"
)


class Version(NamedTuple):
    """A parsed PEP 440 version; compare with :meth:`key`."""

    epoch: int
    release: tuple[int, ...]
    pre: Optional[tuple[int, int]]     # (rank of a/b/rc, number)
    post: Optional[int]
    dev: Optional[int]
    local: Optional[tuple[Any, ...]]

    @property
    def is_prerelease(self) -> bool:
        """True for an alpha, beta, release candidate or development release."""
        return self.pre is not None or self.dev is not None

    def key(self) -> tuple:
        """The sort key of PEP 440: 1.0.dev0 < 1.0a1 < 1.0 < 1.0.post1; 1.0 == 1.0.0."""
        release = self.release
        while len(release) > 1 and release[-1] == 0:
            release = release[:-1]
        if self.pre is None and self.post is None and self.dev is not None:
            pre: tuple = (-1,)          # 1.0.dev0 sorts before 1.0a0
        elif self.pre is None:
            pre = (1,)
        else:
            pre = (0, *self.pre)
        post = (-1,) if self.post is None else (0, self.post)
        dev = (1,) if self.dev is None else (0, self.dev)
        local = () if self.local is None else tuple(
            (1, part) if isinstance(part, int) else (0, part) for part in self.local)
        return (self.epoch, release, pre, post, dev, local)

    def public(self) -> Version:
        """The version without its local part (``1.0+cpu`` -> ``1.0``)."""
        return self._replace(local=None)

    def base(self) -> Version:
        """The release alone: no pre-, post-, development or local part."""
        return Version(self.epoch, self.release, None, None, None, None)


def parse_version(text: str) -> Optional[Version]:
    """*text* as a PEP 440 version, or None if it is not one."""
    m = _VERSION.match(text)
    if m is None:
        return None
    pre = None
    if m.group("pre"):
        pre = (_PRE_RANK[m.group("pre_l").lower()], int(m.group("pre_n") or 0))
    post = None
    if m.group("post"):
        post = int(m.group("post_n1") or m.group("post_n2") or 0)
    dev = int(m.group("dev_n") or 0) if m.group("dev") else None
    local = None
    if m.group("local"):
        local = tuple(int(p) if p.isdigit() else p.lower()
                      for p in re.split(r"[-_.]", m.group("local")))
    return Version(int(m.group("epoch") or 0), tuple(int(p) for p in
                                                        m.group("release").split(".")),
                   pre, post, dev, local)


def _prefix_match(version: Version, prefix: str) -> Optional[bool]:
    """``==PREFIX.*``: the release of *version* starts with PREFIX (zeros padded)."""
    spec = parse_version(prefix)
    if spec is None or spec.pre or spec.post is not None or spec.dev is not None \
            or spec.local is not None:
        return None
    n = len(spec.release)
    release = version.release + (0,) * max(0, n - len(version.release))
    return version.epoch == spec.epoch and release[:n] == spec.release


def _clause_contains(op: str, spec_text: str, version: Version, text: str) -> Optional[bool]:
    if op == "===":
        return text.strip().lower() == spec_text.lower()
    if spec_text.endswith(".*"):
        if op not in ("==", "!="):
            return None
        match = _prefix_match(version.public(), spec_text[:-2])
        return match if match is None or op == "==" else not match
    spec = parse_version(spec_text)
    if spec is None:
        return None
    if op == "~=":
        if len(spec.release) < 2 or spec.local is not None:
            return None
        prefix = ".".join(str(p) for p in spec.release[:-1])
        if spec.epoch:
            prefix = f"{spec.epoch}!{prefix}"
        return (version.public().key() >= spec.key()
                and bool(_prefix_match(version.public(), prefix)))
    if op in ("==", "!="):
        candidate = version if spec.local is not None else version.public()
        equal = candidate.key() == spec.key()
        return equal if op == "==" else not equal
    if spec.local is not None:
        return None  # PEP 440: no local versions in ordered comparisons
    if op == "<=":
        return version.public().key() <= spec.key()
    if op == ">=":
        return version.public().key() >= spec.key()
    if op == "<":
        # <1.0 excludes 1.0's own pre-releases unless the bound is a pre-release itself
        return version.key() < spec.key() and (
            spec.is_prerelease or not version.is_prerelease
            or version.base().key() != spec.base().key())
    # ">": >1.0 excludes 1.0's post-releases and local versions, unless named
    if not version.key() > spec.key():
        return False
    same_base = version.base().key() == spec.base().key()
    if spec.post is None and version.post is not None and same_base:
        return False
    return not (version.local is not None and same_base)


def specifier_contains(specifier: str, version: str) -> Optional[bool]:
    """Whether *version* satisfies *specifier* (``">=0.1,<0.2"``; empty: any version).

    True or False when it can tell; None when either is not something this module
    reads (then the caller should not refuse anything on its account).
    """
    parsed = parse_version(version)
    if parsed is None:
        return None
    answer: Optional[bool] = True
    for clause in specifier.split(","):
        if not clause.strip():
            continue
        m = _SPECIFIER.match(clause)
        if m is None:
            return None
        result = _clause_contains(m.group(1), m.group(2), parsed, version)
        if result is None:
            answer = None
        elif not result:
            return False
    return answer


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def core_requirement(requires: Optional[Iterable[str]],
                     core: str = CORE_DISTRIBUTION) -> Optional[str]:
    """The version specifier a distribution's ``Requires-Dist`` lines give for *core*.

    "" for an unversioned requirement; None if it has none (or only under an extra or
    an environment marker, which this module does not evaluate).
    """
    for line in requires or ():
        m = _REQUIREMENT.match(line)
        if m is None or _canon(m.group("name")) != _canon(core):
            continue
        if m.group("marker") and m.group("marker").strip():
            continue
        rest = m.group("rest").strip()
        if rest.startswith("@"):
            continue  # a URL: no version to compare
        if rest.startswith("(") and rest.endswith(")"):
            rest = rest[1:-1]   # the old "wflp (>=0.1,<0.2)" form
        return rest.replace(" ", "")
    return None


def incompatibility(distribution: str, requires: Optional[Iterable[str]],
                    core_version: str) -> Optional[str]:
    """Why *distribution* cannot be used with wflp *core_version*, or None if it can (or
    if that cannot be told). *requires*: its ``Requires-Dist`` lines."""
    spec = core_requirement(requires)
    if not spec or specifier_contains(spec, core_version) is not False:
        return None
    return (f"it needs wflp{spec} but this is wflp {core_version}; "
            f"install a wflp it supports (pip install 'wflp{spec}') or a {distribution} "
            f"made for this one (pip install {distribution} 'wflp=={core_version}')")


def plugin_requirement(core_version: str) -> str:
    """The requirement a plugin made for wflp *core_version* declares: the releases that
    keep the plugin interface, ``wflp>=A.B,<A.(B+1)`` before 1.0 (a 0.x minor release may
    change it), ``wflp>=A.B,<(A+1)`` after. ``"0.1.0"`` -> ``"wflp>=0.1,<0.2"``."""
    version = parse_version(core_version)
    if version is None:
        raise ValueError(f"{core_version!r} is not a PEP 440 version")
    major, minor = (version.release + (0,))[:2]
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"{CORE_DISTRIBUTION}>={major}.{minor},<{upper}"


def requires_of(dist: Any) -> Optional[list]:
    """The ``Requires-Dist`` lines of an importlib.metadata distribution; None if unknown
    (a stand-in object without metadata, or metadata that cannot be read)."""
    try:
        requires = getattr(dist, "requires", None)
    except Exception:  # damaged metadata: the check is skipped, not the plugin
        return None
    return list(requires) if isinstance(requires, (list, tuple)) else None


__all__ = ["Version", "core_requirement", "incompatibility", "parse_version",
           "plugin_requirement", "requires_of", "specifier_contains"]
