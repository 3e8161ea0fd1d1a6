"""switchboard server-config: the configuration `make run DOMAIN=...` starts from."""

from __future__ import annotations

import ipaddress
import tomllib

import pytest

from switchboard.cli import main
from switchboard.config import parse_config
from switchboard.server_config import ServerConfigError, render, route_address


def test_the_configuration_of_a_server_on_the_internet() -> None:
    text = render("Meet.Example.org.", email="ops@example.org", bind_ip="10.0.0.5",
                  public_ip="203.0.113.7", data_dir="/var/lib/switchboard")
    config = parse_config(tomllib.loads(text))  # every key is one the server knows
    assert config.http.listen == "0.0.0.0:443"
    assert list(config.http.acme_domains) == ["meet.example.org"]
    assert config.http.acme_email == "ops@example.org"
    assert config.http.acme_http_listen == "0.0.0.0:80"
    assert "udp:0.0.0.0:5060" in config.sip.listen and "tcp:0.0.0.0:5060" in config.sip.listen
    assert (config.media.address, config.media.announce) == ("10.0.0.5", "203.0.113.7")
    assert (config.bridge.address, config.bridge.announce) == ("10.0.0.5", "203.0.113.7")
    assert config.sip.announce == "203.0.113.7"
    assert config.store.path == "/var/lib/switchboard"


def test_without_a_public_address_the_bound_one_is_announced() -> None:
    config = parse_config(tomllib.loads(render("meet.example.org", bind_ip="10.0.0.5")))
    assert config.media.announce == config.bridge.announce == "10.0.0.5"


@pytest.mark.parametrize("domain", ["localhost", "bad domain.org", "-x.example.org",
                                    "example.123", "a" * 64 + ".org", ""])
def test_names_a_certificate_cannot_be_for_are_refused(domain: str) -> None:
    with pytest.raises(ServerConfigError):
        render(domain, bind_ip="10.0.0.5")


def test_addresses_and_email_are_checked_and_quoted() -> None:
    with pytest.raises(ServerConfigError):
        render("meet.example.org", bind_ip="not-an-ip")
    with pytest.raises(ServerConfigError):
        render("meet.example.org", bind_ip="10.0.0.5", public_ip="1.2.3")
    with pytest.raises(ServerConfigError):
        render("meet.example.org", bind_ip="10.0.0.5", email='x"\n[admin]')


def test_the_route_address_is_a_local_address() -> None:
    # (a routing question to the kernel: connect() on UDP sends nothing)
    ipaddress.ip_address(route_address())


def test_the_command_prints_it_and_refuses_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server-config", "--domain", "meet.example.org", "--bind-ip", "127.0.0.1"]) == 0
    assert 'acme_domains = ["meet.example.org"]' in capsys.readouterr().out
    assert main(["server-config", "--domain", "nope"]) == 2
    assert "not a DNS name" in capsys.readouterr().err
