"""Errors a user can fix. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad usage or unreadable input: reported as one line, exit code 2, no traceback."""
