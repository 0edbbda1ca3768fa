"""Counted nouns: one spelling of "1 alert" / "2 alerts" for every message."""

from notifier.wording import counted


def test_one_is_singular_and_every_other_count_plural() -> None:
    """Only a count of exactly one takes the singular; zero reads "0 alerts", as people say."""
    assert counted(1, "alert") == "1 alert"
    assert counted(0, "alert") == "0 alerts"
    assert counted(2, "earlier message") == "2 earlier messages"
