"""The registry client against the HTTP registry (and mock://): ids, subjects, refusals, outages."""

from __future__ import annotations

import socket
import time

import pytest

from logstore.bridge.kafka import BridgeError
from logstore.bridge.registry_client import RegistryClient, RegistryRefused
from tests.bridge.kafkautil import V1, V2, V3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("over_http", [True, False])
def test_ids_are_global_registration_idempotent_and_checked(registry, over_http, request):
    url = registry.url if over_http else f"mock://{request.node.name}"
    client = RegistryClient(url)
    subject = f"{request.node.name}-value"
    first = client.register(subject, V1)
    assert RegistryClient(url).register(subject, V1) == first  # a new client: the registry's answer
    assert RegistryClient(url).register(f"{subject}-other", V1) == first  # one id per schema
    second = client.register(subject, V2)
    assert second != first
    assert RegistryClient(url).schema(second) == V2
    assert RegistryClient(url).latest(subject) == (second, 2, V2)
    assert RegistryClient(url).latest("no-such-subject") is None
    with pytest.raises(RegistryRefused) as refused:
        RegistryClient(url).register(subject, V3)
    assert refused.value.status == 409 and "amount" in str(refused.value)
    with pytest.raises(RegistryRefused, match="Schema not found") as unknown:
        RegistryClient(url).schema(999_999)
    assert unknown.value.status == 404


def test_an_unreachable_registry_is_one_error_after_bounded_retries():
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(BridgeError) as info:
        RegistryClient(url, retry_timeout=1.0).schema(1)
    spent = time.monotonic() - started
    assert 0.9 <= spent < 5
    text = str(info.value)
    assert text.startswith(f"cannot reach the schema registry at {url}: ") and "attempt(s) over" in text
    assert "\n" not in text


def test_urls_are_checked_and_credentials_become_basic_auth():
    with pytest.raises(BridgeError, match="expected http://, https:// or mock://NAME"):
        RegistryClient("ftp://registry")
    client = RegistryClient("http://user:s%40cret@127.0.0.1:8081/")
    assert client.url == "http://127.0.0.1:8081"
    assert client._auth == "Basic dXNlcjpzQGNyZXQ="  # base64 of user:s@cret
