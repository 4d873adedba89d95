"""The factory behind the "mace" calculator; torch and mace are imported only here."""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Optional, Union

from wflp.errors import ParameterError, PluginError

TORCH_VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def mace_calculator(model_paths: Union[str, os.PathLike], device: str = "cpu",
                    default_dtype: str = "float64", threads: Optional[int] = 1,
                    **kwargs: Any) -> Any:
    """mace-torch's MACECalculator for the model file *model_paths*.

    threads: torch's intra-op threads in this process (1 by default: wflp's worker
    processes are the parallelism; None leaves torch's setting alone). Other keyword
    arguments go to MACECalculator. Importing mace sets the root logger to INFO and
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (to load its models with torch.load); both are
    put back once the model is loaded.
    """
    path = os.fspath(model_paths)
    if not os.path.isfile(path):
        raise ParameterError(f"mace: no MACE model file {path!r}")
    root = logging.getLogger()
    level = root.level
    saved = os.environ.get(TORCH_VARIABLE)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=f".*{TORCH_VARIABLE}")
            try:
                import torch
                from mace.calculators import MACECalculator
            except ImportError as err:
                raise PluginError(f"the mace calculator needs mace-torch, which cannot be "
                                  f"imported ({err}); install torch (pip install "
                                  "torch==2.13.0 for the CPU build here) and then "
                                  "mace-torch") from err
            if threads is not None:
                torch.set_num_threads(int(threads))
            return MACECalculator(model_paths=path, device=device,
                                  default_dtype=default_dtype, **kwargs)
    finally:  # what importing mace changed in this process
        root.setLevel(level)
        if saved is None:
            os.environ.pop(TORCH_VARIABLE, None)
        else:
            os.environ[TORCH_VARIABLE] = saved
