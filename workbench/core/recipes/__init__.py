"""Recipes: the original experiments as YAML step lists (spec), run step by step as ordinary workbench
actions (steps, runner), each ending in a report of our figures beside the original's (report)."""
