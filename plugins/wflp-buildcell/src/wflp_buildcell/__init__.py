"""wflp plugin: the "buildcell" generator (random structures from AIRSS buildcell).

Discovering this plugin imports only this module; the generator lives in
wflp_buildcell.generate and runs the external ``buildcell`` program.
"""

from __future__ import annotations

from wflp import GeneratorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="buildcell",
            summary="random structures from AIRSS buildcell (one per input item), seeded",
            operation="wflp_buildcell.generate:buildcell",
        ),
    ]
