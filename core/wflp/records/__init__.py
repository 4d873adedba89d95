"""Records: what made an output, so that reuse is decided by content, not by a file existing.

- :mod:`.describe`: canonical descriptions of parameters, functions and calculators;
- :mod:`.fingerprint`: content fingerprints of inputs (and the end-of-run check);
- :mod:`.record`: the typed :class:`Record` and its JSON sidecar;
- :mod:`.store`: the :class:`OutputStore` (lock, reuse / mismatch / overwrite, commit);
- :mod:`.provenance`: which installed distribution provides a piece of code;
- :mod:`.migrate`: the pure migrations of older record formats;
- :mod:`.query`: status checks, migration of folders and lineage: every query on
  provenance reads records through it.
"""

from .describe import Describer, canonical, canonical_json, describe_callable, sha256_bytes
from .fingerprint import atoms_digest, file_identity, fingerprint_configset, sha256_file
from .provenance import host_info, installed_code, provider_of
from .query import check, descendants, lineage, status
from .record import (
    RECORD_FORMAT,
    RECORD_SUFFIX,
    Record,
    mismatch_error,
    now_iso,
    parameters_digest,
    read_json,
    read_record,
    record_path,
    write_json,
    write_json_atomic,
)
from .store import OutputLock, OutputStore, output_error

__all__ = ["RECORD_FORMAT", "RECORD_SUFFIX", "Describer", "OutputLock", "OutputStore", "Record",
           "atoms_digest", "canonical", "canonical_json", "check", "descendants",
           "describe_callable", "file_identity", "lineage", "status",
           "fingerprint_configset", "host_info", "installed_code", "mismatch_error", "now_iso",
           "output_error", "parameters_digest", "provider_of", "read_json", "read_record",
           "record_path", "sha256_bytes", "sha256_file", "write_json", "write_json_atomic"]
