"""Argument types shared by the subcommands (argparse reports their messages as usage errors, exit 2)."""

from __future__ import annotations

import argparse


def at_least_one(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value
