"""Devices of the emulated Defguard core: creation during enrollment and polling tokens.

A new device gets one sequential address in every location its user's groups allow, as the
wg-quick configurations the proxy hands out expect; devices are never deleted here. Polling
tokens follow ``PollingToken`` (v2.0.1 crates/defguard_common/src/db/models/polling_token.rs):
``create_device`` adds one, ``network_info`` replaces the device's, ``/poll`` issues none.
"""

from __future__ import annotations

from .defguard_enrollment import DefguardEnrollment
from .defguard_model import Device, EnrollmentToken, ProxyError, User
from .rust_rules import is_wireguard_key

# tonic 0.14 `Status` Display (tonic-v0.14.2 tonic/src/status.rs:749) of
# Status::not_found("device not found"), which proxy v1.6.2 src/error.rs:82 puts in the body.
DEVICE_NOT_FOUND = "status: 'Some requested entity was not found', self: \"device not found\""
NO_NAME = (
    "Cannot add a new device with no name. You may be trying to add a new user device as a "
    "network device. Defguard CLI supports only network devices."
)


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

    def create_device(self, token: EnrollmentToken, name: str, pubkey: str) -> tuple[Device, str]:
        """``create_device`` after ``validate_session`` (v2.0.1
        crates/defguard_proxy_manager/src/servers/enrollment.rs:554-728, v1.6.6
        grpc/enrollment.rs:528-700): disabled owner, pubkey, duplicate key, then an empty name
        (``is_empty``: a blank name passes). Returns the device and its new polling token."""
        user = self.users_by_id[token.user_id]
        if not user.is_active:
            raise ProxyError(400, "can't add device to disabled user")
        if not is_wireguard_key(pubkey):
            raise ProxyError(400, "invalid pubkey")
        if any(d.pubkey == pubkey for d in self.devices.values()):
            raise ProxyError(400, "invalid key")
        if name == "":
            raise ProxyError(400, NO_NAME)
        device = self._add_device(user, name, pubkey)
        return device, self._new_polling_token(device)

    def network_info(self, token: EnrollmentToken, pubkey: str) -> tuple[Device, str]:
        """``get_network_info`` after ``validate_session`` (v2.0.1 servers/enrollment.rs:919-950,
        v1.6.6 grpc/enrollment.rs:888-918): pubkey, existence, owner; then
        ``new_polling_token`` deletes the device's polling token and issues another."""
        if not is_wireguard_key(pubkey):
            raise ProxyError(400, "invalid pubkey")
        device = next((d for d in self.devices.values() if d.pubkey == pubkey), None)
        if device is None:
            raise ProxyError(404, DEVICE_NOT_FOUND)
        if device.user_id != token.user_id:
            raise ProxyError(401, "enrollment token is not valid for specified device")
        for value in [v for v, d in self.polling_tokens.items() if d == device.id]:
            del self.polling_tokens[value]
        return device, self._new_polling_token(device)

    def _new_polling_token(self, device: Device) -> str:
        value = self._new_token_value()
        self.polling_tokens[value] = device.id
        return value

    def poll(self, value: str) -> Device:
        """``PollingServer::info`` (v2.0.1 crates/defguard_core/src/enterprise/grpc/polling.rs:
        25-97, v1.6.6 the same file :23-95): licence, token, owner active. Polling tokens never
        expire and polling issues no new one."""
        if not self.enterprise_enabled():
            raise ProxyError(402, "Enterprise features are not enabled")
        device_id = self.polling_tokens.get(value)
        if device_id is None:
            raise ProxyError(403, "invalid token")
        device = self.devices[device_id]
        if not self.users_by_id[device.user_id].is_active:
            raise ProxyError(403, "user inactive")
        return device
