"""Workbench: a terminal workbench for fine-tuning, chatting with and evaluating causal language models."""

__version__ = "0.1.0"
