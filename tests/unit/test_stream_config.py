"""The gateway's own tunables (:class:`stream_gateway.config.GatewayConfig`)."""

from __future__ import annotations

import pytest

from stream_gateway.config import GatewayConfig


def test_defaults() -> None:
    config = GatewayConfig.from_env({})
    assert config == GatewayConfig()
    assert (config.port, config.health_host) == (8080, "0.0.0.0")
    assert config.connects_per_second == 100 and config.coalesce_seconds == 1.0


def test_every_variable_is_read() -> None:
    config = GatewayConfig.from_env(
        {
            "PORT": "9001",
            "STREAM_HEALTH_HOST": "127.0.0.1",
            "STREAM_CONNECTS_PER_SECOND": "20",
            "STREAM_CONNECT_BURST": "5",
            "STREAM_SYNC_COALESCE_SECONDS": "2.5",
            "STREAM_PING_SECONDS": "10",
        }
    )
    assert config == GatewayConfig(
        port=9001,
        health_host="127.0.0.1",
        connects_per_second=20,
        connect_burst=5,
        coalesce_seconds=2.5,
        ping_seconds=10,
    )


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PORT", "http"),
        ("PORT", "0"),
        ("PORT", "70000"),
        ("STREAM_CONNECTS_PER_SECOND", "0"),
        ("STREAM_CONNECTS_PER_SECOND", "nan"),
        ("STREAM_CONNECT_BURST", "0"),
        ("STREAM_SYNC_COALESCE_SECONDS", "-1"),
        ("STREAM_PING_SECONDS", "0.1"),
    ],
)
def test_malformed_values_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        GatewayConfig.from_env({name: raw})


def test_the_gateway_refuses_to_start_without_its_kek(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream_gateway.__main__ import main

    for name in ("FIRESTORE_EMULATOR_HOST", "CREDENTIALS_KEK_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "acme-trading")
    assert main() == 2
    assert "CREDENTIALS_KEK_URI" in capsys.readouterr().err
    monkeypatch.setenv("STREAM_PING_SECONDS", "0")  # a bad setting of its own: named too
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    assert main() == 2
    assert "STREAM_PING_SECONDS" in capsys.readouterr().err
