"""Helpers of the outpainting scripts: the padded canvas and the control checks (canvas.py), and the matched noise
that fills a new area for Outpainting mk2 (noise.py)."""
