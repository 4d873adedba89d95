"""File formats wflp reads and writes itself (extended XYZ); everything else goes through
ase.io."""
