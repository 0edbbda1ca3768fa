"""`python -m notifier` runs the same CLI as the `notifier` console script."""

from notifier.launch import entry

entry()
