"""CrystalGAN (Nouira, Sokolovska & Crivello 2018): ternary A-H-B hydride structures from binary AH and BH.

Modules: :mod:`.data` (MATLAB/POSCAR readers and the fixed-size tensor encoding), :mod:`.geometry`
(differentiable periodic nearest-neighbour distances, the geometric loss, the pymatgen quality check),
:mod:`.model` (MLP generators/discriminators, the two cross-domain GAN steps, feature transfer, the
Gaussian-noise GAN baseline), :mod:`.train` (training loops, generation, weights I/O) and
:mod:`.compare` (the paper's Table II comparison).
"""

from __future__ import annotations
