"""Helpers of the X/Y/Z plot extension: axis types and value syntax (axes.py), grid drawing (draw.py)."""
