"""wflp plugin: SOAP descriptors through dscribe, as the descriptor "soap".

Descriptors are added to the configurations (``info[key]`` averaged, or
``arrays[key]`` per atom), so wflp's global selectors (select_cur, select_fps)
can use them; ``get_descriptor("soap").key`` names the key they read by default.
The same operation stays registered as the generator "soap", its kind before wflp
had descriptors, so that ``get_generator("soap")``, ``wflp run generator soap`` and
chain steps of kind "generator" written for it keep working. Discovering this
plugin imports only this module; dscribe is imported when descriptors are first
computed (see wflp_soap.soap).
"""

from __future__ import annotations

from wflp import DescriptorSpec, GeneratorSpec, hookimpl

__version__ = "0.1.0"

SUMMARY = "SOAP descriptors (dscribe) in info or arrays; species from the inputs"


@hookimpl
def wflp_descriptors() -> list[DescriptorSpec]:
    return [DescriptorSpec(name="soap", summary=SUMMARY, operation="wflp_soap.soap:soap",
                           key="soap")]


@hookimpl
def wflp_generators() -> list[GeneratorSpec]:
    """The descriptor under its earlier kind, for code and chains written before it."""
    return [GeneratorSpec(name="soap", summary=f"{SUMMARY} (the descriptor soap)",
                          operation="wflp_soap.soap:soap")]
