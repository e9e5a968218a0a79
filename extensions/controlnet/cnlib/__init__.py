"""Helpers of the ControlNet extension (preprocessors, the page's unit controls)."""
