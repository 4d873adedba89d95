"""wflp plugin: phonon displacements and frequencies with phonopy.

Discovering this plugin imports only this module; phonopy is imported when an
operation first runs (see wflp_phonopy.phonons).
"""

from __future__ import annotations

from wflp import GeneratorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="phonon_displacements",
            summary="phonopy's displaced supercells of each input, with the dataset to "
                    "come back",
            operation="wflp_phonopy.phonons:phonon_displacements",
        ),
        GeneratorSpec(
            name="phonon_frequencies",
            summary="force constants and phonon frequencies from calculated displaced "
                    "supercells (phonopy)",
            operation="wflp_phonopy.phonons:phonon_frequencies",
        ),
    ]
