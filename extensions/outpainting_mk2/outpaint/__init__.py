"""Helpers of the Outpainting mk2 extension: the matched noise that fills a new area (noise.py)."""
