"""Pages over a database from ``wflp db collect``: outputs, their rows, one row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, render_template, request


def register_db_pages(app: Flask, path: Path) -> None:
    """Overview, output table and configuration pages read from the ase.db at *path*
    (opened read-only: nothing is ever written to it)."""
    import ase.db

    db = ase.db.connect(str(path.resolve()), type="db")

    def rows_of(output: str) -> list:
        rows = sorted(db.select(wflp_output=output, include_data=False),
                      key=lambda r: r.wflp_index)
        if not rows:
            abort(404)
        return rows

    @app.get("/")
    def overview() -> str:
        counts: dict[str, dict] = {}
        for row in db.select(include_data=False, columns=["id", "key_value_pairs"]):
            kvp = row.key_value_pairs
            entry = counts.setdefault(kvp.get("wflp_output", "?"), {
                "operation": kvp.get("wflp_operation", ""), "count": 0})
            entry["count"] += 1
        rows = [{"rel": k, "state": "collected", "other": [], "detail": "", "kind": "",
                 "operation": v["operation"], "count": v["count"], "model": False}
                for k, v in sorted(counts.items())]
        return render_template("overview.html", title=path.name, rows=rows, root=str(path))

    @app.get("/output")
    def output() -> str:
        from .app import _filter_rows, _sort_rows

        rel = request.args.get("path", "")
        rows = rows_of(rel)
        first = db.get(id=rows[0].id)
        table = [{"index": r.wflp_index, "formula": r.formula, "natoms": r.natoms,
                  "kvp": {k: v for k, v in r.key_value_pairs.items()
                          if not k.startswith("wflp_")}} for r in rows]
        query, sort = request.args.get("filter", ""), request.args.get("sort", "")
        keys = sorted({k for r in table for k in r["kvp"]})
        shown = _sort_rows(_filter_rows(table, query), sort)
        record = first.data.get("wflp_record")
        return render_template(
            "output.html", title=rel, rel=rel, status={"state": "collected",
                                                       "other_versions": [], "detail": ""},
            summary={}, record_json=json.dumps(record, indent=1, sort_keys=True, default=str)
            if record else "", lineage=[], panels=[], model=False, tables=[],
            configs=shown, keys=keys, shown=len(shown), total=len(table), query=query,
            sort=sort)

    def atoms_row(rel: str, index: Any) -> Any:
        for row in rows_of(rel):
            if row.wflp_index == index:
                return db.get(id=row.id)
        abort(404)

    @app.get("/config")
    def config() -> str:
        rel, index = request.args.get("path", ""), request.args.get("index", type=int)
        row = atoms_row(rel, index)
        info = {k: v for k, v in row.key_value_pairs.items()}
        for key, value in (row.data.get("info") or {}).items():
            info[key] = json.dumps(value.tolist() if hasattr(value, "tolist") else value)
        if row.get("energy") is not None:
            info["energy"] = row.energy
        atoms = row.toatoms()
        names = ["numbers", "positions"] + (["forces"] if row.get("forces") is not None
                                            else [])
        values = [atoms.numbers, atoms.positions] + ([row.forces] if "forces" in names
                                                      else [])
        table = [[str(v[i].tolist() if hasattr(v[i], "tolist") else v[i]) for v in values]
                 for i in range(len(atoms))]
        return render_template("config.html", title=f"{rel} #{index}", rel=rel, index=index,
                               count=len(rows_of(rel)), info=info, names=names, table=table,
                               formula=row.formula, pbc=atoms.pbc.tolist(),
                               cell=atoms.cell.tolist())

    @app.get("/config.png")
    def config_png() -> Response:
        from .app import _png_of

        rel, index = request.args.get("path", ""), request.args.get("index", type=int)
        return Response(_png_of(atoms_row(rel, index).toatoms()), mimetype="image/png")

    @app.get("/jobs")
    def jobs() -> str:
        from .app import _jobs

        rows, where = _jobs()
        return render_template("jobs.html", title="jobs", rows=rows, where=where)
