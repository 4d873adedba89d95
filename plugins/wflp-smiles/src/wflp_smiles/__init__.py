"""wflp plugin: the "smiles" generator (SMILES strings to 3D structures with RDKit).

Discovering this plugin imports only this module; RDKit is imported when the
generator first runs (see wflp_smiles.generate).
"""

from __future__ import annotations

from wflp import GeneratorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="smiles",
            summary="3D molecules from SMILES (RDKit ETKDG + MMFF), seeded per item",
            operation="wflp_smiles.generate:smiles",
        ),
    ]
