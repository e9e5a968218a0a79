"""Helpers of the SD upscale extension: tiles, their seeds and their recombination (tiles.py)."""
