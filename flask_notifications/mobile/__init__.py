"""Native mobile push (iOS and Android apps): the devices' push tokens and
their HTTP API.

A device is stored by its push token (an APNs device token or an FCM
registration token); see :class:`Devices` and :doc:`/mobile`.
"""

from .store import MAX_TOKEN_LENGTH, PLATFORMS, Device, Devices, max_devices, parse_device

__all__ = ["MAX_TOKEN_LENGTH", "PLATFORMS", "Device", "Devices", "max_devices", "parse_device"]
