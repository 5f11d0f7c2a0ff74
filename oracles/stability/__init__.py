"""Stability judges: potentials that relax, elemental references, convex hulls and verdicts."""
