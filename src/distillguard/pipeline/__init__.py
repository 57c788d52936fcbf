"""The detection pipeline and its `detect` command."""

from __future__ import annotations

from distillguard.pipeline.commands import register

__all__ = ["register"]
