"""Candidate makers: composition generators (MatGAN, AE sampling) and crystal-structure generators."""
