"""Counts in the sentences people read: "1 rule", "3 rules", written one way everywhere."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, the noun plural unless the count is one ("0 alerts", "1 alert")."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
