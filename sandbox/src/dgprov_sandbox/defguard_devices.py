"""Devices of the emulated Defguard core: creation during enrollment and polling tokens.

A new device gets one sequential address in every location its user's groups allow, as the
wg-quick configurations the proxy hands out expect; devices are never deleted here.
"""

from __future__ import annotations

import base64
import binascii

from .defguard_enrollment import DefguardEnrollment
from .defguard_model import Device, EnrollmentToken, ProxyError, User


def is_valid_wireguard_key(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


class DefguardDevices(DefguardEnrollment):
    """Add devices to users and resolve the proxy's polling tokens."""

    polling_tokens: dict[str, int]

    def _add_device(self, user: User, name: str, pubkey: str) -> Device:
        device = Device(
            id=len(self.devices) + 1,
            name=name,
            pubkey=pubkey,
            user_id=user.id,
            created=self.clock.now(),
        )
        for location in self.locations:
            if location.allows(user):
                device.addresses[location.id] = location.next_address()
        self.devices[device.id] = device
        return device

    def create_device(self, token: EnrollmentToken, name: str, pubkey: str) -> Device:
        user = self.users_by_id[token.user_id]
        if not name.strip():
            raise ProxyError(400, "Cannot add a new device with no name")
        if not is_valid_wireguard_key(pubkey):
            raise ProxyError(400, "invalid pubkey")
        if any(d.pubkey == pubkey for d in self.devices.values()):
            raise ProxyError(400, "invalid key")
        if not user.is_active:
            raise ProxyError(400, "can't add device to disabled user")
        return self._add_device(user, name, pubkey)

    def device_for_session(self, token: EnrollmentToken, pubkey: str) -> Device:
        device = next((d for d in self.devices.values() if d.pubkey == pubkey), None)
        if device is None:
            raise ProxyError(404, "device not found")
        if device.user_id != token.user_id:
            raise ProxyError(401, "enrollment token is not valid for specified device")
        return device

    def new_polling_token(self, device: Device) -> str:
        value = self._new_token_value()
        self.polling_tokens[value] = device.id
        return value

    def device_for_polling_token(self, value: str) -> Device:
        device_id = self.polling_tokens.get(value)
        if device_id is None or device_id not in self.devices:
            raise ProxyError(401, "invalid token")
        return self.devices[device_id]
