"""wflp plugin: SOAP descriptors through dscribe, as the generator "soap".

Descriptors are added to the configurations (``info[key]`` averaged, or
``arrays[key]`` per atom), so wflp's global selectors (select_cur, select_fps)
can use them. The kinds of extension have no "descriptor" kind: an operation
that returns its inputs with something added is registered as a generator, like
md or optimize. Discovering this plugin imports only this module; dscribe is
imported when descriptors are first computed (see wflp_soap.soap).
"""

from __future__ import annotations

from wflp import GeneratorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_generators() -> list[GeneratorSpec]:
    return [
        GeneratorSpec(
            name="soap",
            summary="SOAP descriptors (dscribe) in info or arrays; species from the inputs",
            operation="wflp_soap.soap:soap",
        ),
    ]
