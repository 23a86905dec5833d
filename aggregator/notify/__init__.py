"""Notification channels: delivery only (the pipeline decides what to send, when and where).

`base` holds the shared types (`Notification`, `Delivery`, the `Channel` protocol) and the words
every channel uses; each kind is its own module: `webpush`, `webhook`, `apprise_channel`,
`alertmanager`. Import a kind's module where it is used: each pulls in its own library (pywebpush,
aiohttp, apprise).
"""

from .base import Channel, Delivery, Level, Notification, State, send_test, test_message

__all__ = ["Channel", "Delivery", "Level", "Notification", "State", "send_test", "test_message"]
