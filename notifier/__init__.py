"""notifier: fill alerts from PolySimulator's execution feed to chat, email and push channels."""

__version__ = "0.1.0"
