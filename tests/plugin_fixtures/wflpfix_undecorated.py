"""A plugin whose misspelled hook also lacks @hookimpl: still reported, not ignored."""

from wflp import SelectorSpec


def wflp_selector():
    return [SelectorSpec(name="fix_never", summary="never registered",
                         operation="wflp.ops:select_by_bool")]
