"""The smiles generator: SMILES strings to 3D molecules with RDKit.

Each input item is a SMILES string (``ConfigSet.from_items(["CCO", ...])``) or a
configuration carrying one in ``info[smiles_key]`` (so that files work from
``wflp run`` and chains: an extended-XYZ file of empty configurations with a
``smiles=`` field). For each, RDKit parses the string, adds explicit hydrogens,
embeds ``n_conformers`` conformers with ETKDG (v3) and, unless ``optimize=None``,
relaxes them with the MMFF94 (or UFF) force field. Every conformer becomes one
``Atoms`` (no cell, not periodic) with

- ``info["smiles"]``: the input string, as given;
- ``info["charge"]``: the total formal charge;
- ``info["multiplicity"]``: 2S+1 from RDKit's radical electrons (high spin: one
  unpaired electron per radical electron);
- ``info["conformer"]``: 0, 1, ... in RDKit's order;
- ``info["optimizer_converged"]``: whether the force field converged (with optimize);
- ``info["config_type"]`` when ``config_type`` is given.

The embedding seed of an item comes from the operation's ``seed`` and the item's
position (its per-item random stream), and RDKit runs with one thread, so the same
seed gives the same geometry in serial and parallel runs. A SMILES that cannot be
parsed, sanitized, embedded or parameterized fails that item with a message naming
the string; with ``AutoparaInfo(skip_failed=True)`` the other items go on.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, Optional

from ase import Atoms
from wflp import operation
from wflp.errors import ParameterError, PluginError

OPTIMIZERS = ("mmff", "uff")
MAX_SEED = 2**31 - 1  # RDKit's randomSeed is a signed 32-bit int


def _check(params: dict, seed: Optional[int]) -> None:
    if seed is None:
        raise ParameterError("smiles: the embedding is random: pass seed=<int> (wflp run ... "
                             "--seed N) so the geometries can be made again")
    n = params["n_conformers"]
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ParameterError(f"smiles: n_conformers must be a whole number >= 1, got {n!r}")
    if params["optimize"] not in OPTIMIZERS + (None,):
        raise ParameterError(f"smiles: optimize must be 'mmff', 'uff' or None (no clean-up), "
                             f"got {params['optimize']!r}")
    steps = params["max_iterations"]
    if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 1:
        raise ParameterError(f"smiles: max_iterations must be a whole number >= 1, got "
                             f"{steps!r}")
    prune = params["prune_rms"]
    if prune is not None and (isinstance(prune, bool) or not isinstance(prune, Real)
                              or prune <= 0):
        raise ParameterError(f"smiles: prune_rms must be a distance in Angstrom (> 0) or None, "
                             f"got {prune!r}")
    if not isinstance(params["smiles_key"], str) or not params["smiles_key"]:
        raise ParameterError(f"smiles: smiles_key must be an info key, got "
                             f"{params['smiles_key']!r}")
    if params["config_type"] is not None and not isinstance(params["config_type"], str):
        raise ParameterError(f"smiles: config_type must be a string or None, got "
                             f"{params['config_type']!r}")


def _rdkit() -> tuple:
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import AllChem, Descriptors
    except ImportError as err:
        raise PluginError(f"the smiles generator needs RDKit, which cannot be imported "
                          f"({err}); install it with `pip install rdkit`") from err
    RDLogger.DisableLog("rdApp.*")  # failures are reported by the exceptions below
    return Chem, AllChem, Descriptors


def smiles_of(item: Any, smiles_key: str) -> str:
    """The SMILES string of an item: the item itself, or an Atoms' info[smiles_key]."""
    if isinstance(item, str):
        return item
    if isinstance(item, Atoms):
        value = item.info.get(smiles_key)
        if isinstance(value, str) and value.strip():
            return value
        raise ValueError(f"smiles: the input configuration has no SMILES string in "
                         f"info[{smiles_key!r}]; give strings (ConfigSet.from_items([...])) "
                         "or set smiles_key")
    raise ValueError(f"smiles: an item must be a SMILES string or a configuration with "
                     f"info[{smiles_key!r}], got {type(item).__name__}")


def molecule_from_smiles(text: str) -> Any:
    """The sanitized RDKit molecule with explicit hydrogens; ValueError naming the string."""
    Chem, _, _ = _rdkit()
    mol = Chem.MolFromSmiles(text.strip(), sanitize=False)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"smiles: {text!r} is not a valid SMILES string (RDKit cannot parse "
                         "it)")
    try:
        Chem.SanitizeMol(mol)
    except Exception as err:  # RDKit raises several types (valence, kekulization ...)
        raise ValueError(f"smiles: {text!r} is not a valid molecule: {err}") from None
    return Chem.AddHs(mol)


@operation("smiles", version="1", check=_check)
def smiles(item: Any, n_conformers: int = 1, optimize: Optional[str] = "mmff",
           max_iterations: int = 2000, prune_rms: Optional[float] = None,
           smiles_key: str = "smiles", config_type: Optional[str] = None,
           rng: Any = None) -> list[Atoms]:
    """3D conformers of one SMILES string (see the module docstring)."""
    _, AllChem, Descriptors = _rdkit()
    text = smiles_of(item, smiles_key).strip()
    mol = molecule_from_smiles(text)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(rng.integers(1, MAX_SEED))
    params.numThreads = 1
    if prune_rms is not None:
        params.pruneRmsThresh = float(prune_rms)
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=int(n_conformers), params=params))
    if not ids:
        raise ValueError(f"smiles: RDKit could not embed {text!r} in 3D (ETKDG found no "
                         "geometry); check the SMILES")
    converged = {}
    if optimize == "mmff":
        if not AllChem.MMFFHasAllMoleculeParams(mol):
            raise ValueError(f"smiles: MMFF94 has no parameters for {text!r}; pass "
                             "optimize='uff', or optimize=None to keep the ETKDG geometry")
        results = AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1,
                                                    maxIters=int(max_iterations))
    elif optimize == "uff":
        if not AllChem.UFFHasAllMoleculeParams(mol):
            raise ValueError(f"smiles: UFF has no parameters for {text!r}; pass "
                             "optimize=None to keep the ETKDG geometry")
        results = AllChem.UFFOptimizeMoleculeConfs(mol, numThreads=1,
                                                   maxIters=int(max_iterations))
    else:
        results = None
    if results is not None:
        converged = {cid: flag == 0 for cid, (flag, _energy) in zip(ids, results)}
    charge = int(sum(a.GetFormalCharge() for a in mol.GetAtoms()))
    multiplicity = int(Descriptors.NumRadicalElectrons(mol)) + 1
    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    out = []
    for k, cid in enumerate(ids):
        atoms = Atoms(symbols, positions=mol.GetConformer(cid).GetPositions())
        atoms.info["smiles"] = text
        atoms.info["charge"] = charge
        atoms.info["multiplicity"] = multiplicity
        atoms.info["conformer"] = k
        if converged:
            atoms.info["optimizer_converged"] = bool(converged[cid])
        if config_type is not None:
            atoms.info["config_type"] = config_type
        out.append(atoms)
    return out


__all__ = ["OPTIMIZERS", "molecule_from_smiles", "smiles", "smiles_of"]
