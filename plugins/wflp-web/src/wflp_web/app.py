"""The Flask app of ``wflp browse``: read-only pages over a project folder or a results db.

Security: every page names files by their path relative to the served folder, and only
paths in the list of what is served (outputs with records, PNGs panels name) are ever
opened; each is resolved (symlinks too) and must stay inside the folder. Templates are
autoescaped; only GET (and HEAD) routes exist, so any write method gets 405.
Records are read through :mod:`wflp.records.query` only.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

from flask import Flask, Response, abort, render_template, request

log = logging.getLogger("wflp.web")
MAX_ROWS = 2000   # rows shown in one configurations table


class Project:
    """What is served from a project folder: its outputs by relative path."""

    def __init__(self, folder: Path):
        from wflp.records import query

        self.root = folder.resolve()
        self.outputs: dict[str, Path] = {}
        for path in query.find_outputs(self.root):
            inside = self.inside(path)
            if inside is not None:
                self.outputs[self.rel(path)] = path

    def inside(self, path: Path) -> Optional[Path]:
        """*path* resolved, if it lies inside the served folder (else None)."""
        try:
            real = Path(os.path.realpath(path))
        except OSError:
            return None
        if real == self.root or self.root in real.parents:
            return real
        return None

    def rel(self, path: Path) -> str:
        return Path(os.path.abspath(path)).relative_to(self.root).as_posix()

    def output(self, rel: str) -> Path:
        """The output named *rel*, or 404: only listed outputs are ever opened."""
        path = self.outputs.get(rel or "")
        if path is None or self.inside(path) is None:
            abort(404)
        return path


def _frames(path: Path) -> list:
    from wflp.io.extxyz import iter_extxyz

    return list(iter_extxyz(path))


def _scalar_info(atoms: Any) -> dict:
    out = {}
    for key, value in atoms.info.items():
        if isinstance(value, (str, bool, int, float)) or getattr(value, "ndim", 1) == 0:
            out[key] = value.item() if hasattr(value, "item") else value
    results = getattr(atoms.calc, "results", None) or {}
    if "energy" in results:
        out.setdefault("energy", float(results["energy"]))
    return out


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(
        value.tolist() if hasattr(value, "tolist") else value, default=str)
    return text if len(text) <= limit else text[:limit] + " ..."


def _filter_rows(rows: list, text: str) -> list:
    """Rows whose key-value pairs match every ``key=value``, ``key<value``, ``key>value``
    term of *text* (comma-separated; numbers compared as numbers)."""
    import re

    terms = [t.strip() for t in text.split(",") if t.strip()]
    for term in terms:
        match = re.match(r"^([^<>=!]+)(<=|>=|!=|=|<|>)(.*)$", term)
        if not match:
            rows = [r for r in rows if term in r["kvp"]]
            continue
        key, op, want = match.group(1).strip(), match.group(2), match.group(3).strip()

        def ok(row: dict, key: str = key, op: str = op, want: str = want) -> bool:
            if key not in row["kvp"]:
                return False
            have = row["kvp"][key]
            try:
                a, b = float(have), float(want)
            except (TypeError, ValueError):
                a, b = str(have), want
                if op not in ("=", "!="):
                    return False
            return {"=": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b,
                    ">=": a >= b}[op]

        rows = [r for r in rows if ok(r)]
    return rows


def _sort_rows(rows: list, key: str) -> list:
    if not key:
        return rows
    reverse = key.startswith("-")
    name = key.lstrip("-")

    def sort_key(row: dict) -> tuple:
        value = row["index"] if name == "index" else row["kvp"].get(name)
        if value is None:
            return (2, 0, "")
        if isinstance(value, (int, float)):
            return (0, value, "")
        return (1, 0, str(value))

    return sorted(rows, key=sort_key, reverse=reverse)


def _png_of(atoms: Any) -> bytes:
    import ase.io
    import matplotlib

    matplotlib.use("Agg")
    buffer = io.BytesIO()
    ase.io.write(buffer, atoms, format="png", rotation="10x,20y", scale=40)
    return buffer.getvalue()


def _lineage(project: Project, path: Path) -> list:
    from wflp.records import query

    graph = query.lineage(path, project=project.root)
    steps = []
    for step in sorted(graph.steps.values(), key=lambda s: (s.depth, s.id)):
        rel = None
        if step.path is not None and project.inside(step.path) is not None:
            try:
                candidate = project.rel(step.path)
            except ValueError:
                candidate = None
            rel = candidate if candidate in project.outputs else None
        name = rel or (Path(step.path).name if step.path else step.id)
        steps.append({"depth": step.depth, "name": name, "link": rel, "state": step.state,
                      "detail": step.detail,
                      "what": (f"{step.record.kind} {step.record.name} v{step.record.version}"
                               if step.record else ""),
                      "parameters": {k: _short(v) for k, v in
                                     sorted((step.record.parameters or {}).items())}
                      if step.record else {}})
    return steps


def _panels(project: Project, path: Path, record: Any) -> list:
    """Panels plugins give for an output (the wflp_panels hook); a failing plugin is logged
    and left out. Images outside the served folder are dropped."""
    from wflp.plugins import get_plugin_manager

    manager = get_plugin_manager()
    manager.load()
    shown = []
    for impl in manager.pm.hook.wflp_panels.get_hookimpls():
        who = manager.pm.get_name(impl.plugin)
        try:
            for panel in impl.function(output=path, record=record) or []:
                images = []
                for image in panel.get("images") or []:
                    if project.inside(Path(image)) is not None and str(image).endswith(".png"):
                        images.append(project.rel(Path(image)))
                shown.append({"title": str(panel.get("title") or who), "plugin": who,
                              "text": panel.get("text"), "table": panel.get("table"),
                              "images": images})
        except Exception:   # a broken panel never breaks the page
            log.exception("wflp_panels of plugin %s failed for %s; left out", who, path)
    return shown


def _error_tables(project: Project, model: Path, record: Any) -> list:
    """The error tables of a model: JSON files beside its folder that name it (the demo's
    08_errors_<fitter>.json), as {title, header, rows}."""
    tables = []
    fitter = record.name if record is not None else ""
    for candidate in sorted(model.parent.glob("*errors*.json")):
        if fitter and fitter not in candidate.name or project.inside(candidate) is None:
            continue
        try:
            data = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        for set_name, report in (data.items() if isinstance(data, dict) else []):
            props = report.get("properties") if isinstance(report, dict) else None
            if not isinstance(props, dict):
                continue
            rows = []
            for prop, entry in props.items():
                groups = dict(entry.get("groups") or {})
                if entry.get("all"):
                    groups["all"] = entry["all"]
                for group, stats in groups.items():
                    rows.append([prop, entry.get("unit", ""), group, stats.get("count"),
                                 _num(stats.get("rmse")), _num(stats.get("mae")),
                                 _num(stats.get("max"))])
            tables.append({"title": f"{candidate.name}: {set_name}",
                           "header": ["property", "unit", "group", "count", "RMSE", "MAE",
                                      "max"], "rows": rows})
    return tables


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def _jobs() -> tuple[list, str]:
    from wflp.remote.store import JobStore, wflp_home

    path = wflp_home() / "jobs.sqlite"
    if not path.is_file():
        return [], f"no job store at {path} (no jobs submitted with this $WFLP_HOME)"
    store = JobStore(path)
    return [r.to_dict() for r in store.select()], str(path)


def create_app(source: os.PathLike | str) -> Flask:
    """The app serving *source*: a project folder, or a database file from
    ``wflp db collect`` (ending in .db)."""
    from wflp.errors import InputError

    source = Path(source)
    app = Flask("wflp_web", template_folder=str(Path(__file__).parent / "templates"))
    app.config["MAX_CONTENT_LENGTH"] = 0

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)   # none; and no 404 in the browser's console
    if source.is_file() and source.suffix == ".db":
        from .dbsource import register_db_pages

        register_db_pages(app, source)
        return app
    if not source.is_dir():
        raise InputError(f"{str(source)!r} is neither a project folder nor a .db file from "
                         "`wflp db collect`")
    project = Project(source)

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/")
    def overview() -> str:
        from wflp.records import query

        rows = []
        for rel, path in project.outputs.items():
            st = query.status(path)
            rec = st.record
            count = sum(int(o.get("configs") or 0) for o in rec.outputs) if rec else None
            rows.append({"rel": rel, "state": st.state, "other": st.other_versions,
                         "detail": st.detail, "kind": rec.kind if rec else "",
                         "operation": rec.name if rec else "", "count": count,
                         "model": path.is_dir()})
        return render_template("overview.html", title=project.root.name, rows=rows,
                               root=str(project.root))

    @app.get("/output")
    def output() -> str:
        from wflp.records import query

        rel = request.args.get("path", "")
        path = project.output(rel)
        st = query.status(path)
        record = st.record
        summary = query.Step("x", path, record).summary() if record else {}
        context: dict[str, Any] = {
            "title": rel, "rel": rel, "status": st, "summary": summary,
            "record_json": json.dumps(record.to_json(path.parent), indent=1, sort_keys=True,
                                      default=str) if record else "",
            "lineage": _lineage(project, path), "panels": _panels(project, path, record),
            "model": path.is_dir(), "tables": [], "configs": [], "keys": [], "shown": 0,
            "total": 0, "query": request.args.get("filter", ""),
            "sort": request.args.get("sort", "")}
        if path.is_dir():
            context["tables"] = _error_tables(project, path, record)
        else:
            rows = [{"index": i, "formula": at.get_chemical_formula(), "natoms": len(at),
                     "kvp": _scalar_info(at)} for i, at in enumerate(_frames(path))]
            context["total"] = len(rows)
            context["keys"] = sorted({k for r in rows for k in r["kvp"]})
            rows = _sort_rows(_filter_rows(rows, context["query"]), context["sort"])
            context["shown"] = len(rows)
            context["configs"] = rows[:MAX_ROWS]
        return render_template("output.html", **context)

    @app.get("/config")
    def config() -> str:
        rel = request.args.get("path", "")
        path = project.output(rel)
        if path.is_dir():
            abort(404)
        index = request.args.get("index", type=int)
        frames = _frames(path)
        if index is None or not 0 <= index < len(frames):
            abort(404)
        atoms = frames[index]
        info = {k: _short(v, 2000) for k, v in atoms.info.items()}
        for key, value in (getattr(atoms.calc, "results", None) or {}).items():
            info.setdefault(key, _short(value, 2000))
        arrays = {k: v for k, v in atoms.arrays.items()}
        names = list(arrays)
        table = [[_short(arrays[n][i], 120) for n in names] for i in range(len(atoms))]
        return render_template("config.html", title=f"{rel} #{index}", rel=rel, index=index,
                               count=len(frames), info=info, names=names, table=table,
                               formula=atoms.get_chemical_formula(), pbc=atoms.pbc.tolist(),
                               cell=atoms.cell.tolist())

    @app.get("/config.png")
    def config_png() -> Response:
        path = project.output(request.args.get("path", ""))
        index = request.args.get("index", type=int)
        if path.is_dir() or index is None:
            abort(404)
        frames = _frames(path)
        if not 0 <= index < len(frames):
            abort(404)
        return Response(_png_of(frames[index]), mimetype="image/png")

    @app.get("/image")
    def image() -> Response:
        rel = request.args.get("path", "")
        if not rel.endswith(".png") or "\0" in rel:
            abort(404)
        candidate = project.inside(project.root / rel)
        if candidate is None or not candidate.is_file():
            abort(404)
        # only PNGs a panel of a served output names are served
        allowed = set()
        for path in project.outputs.values():
            st_record = None
            from wflp.records import query

            st_record, _why, _fmt = query.load(path)
            for panel in _panels(project, path, st_record):
                allowed.update(panel["images"])
        if project.rel(candidate) not in allowed:
            abort(404)
        return Response(candidate.read_bytes(), mimetype="image/png")

    @app.get("/jobs")
    def jobs() -> str:
        rows, where = _jobs()
        return render_template("jobs.html", title="jobs", rows=rows, where=where)

    return app


__all__ = ["create_app"]
