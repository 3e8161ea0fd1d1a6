"""Trunks: validation, E.164 normalisation with a default country, the store (migration,
conflicts, survives reopening), and the password never in the API form."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dialplan.models import Conflict, InvalidInput, NotFound
from dialplan.store import SCHEMA_VERSION, Store
from dialplan.trunks import parse_trunk, to_e164

BASE = {"name": "carrier", "address": "192.0.2.1:5070", "transport": "udp",
        "username": "sb", "password": "s3cret pw", "register": True, "expires": 300,
        "numbers": ["+15550100"], "allowed_addresses": ["192.0.2.0/24"], "auth": False,
        "media_encryption": "optional", "allowed_destinations": ["+1555"]}  # fmt: skip


@pytest.mark.parametrize(("raw", "country", "expected"), [
    ("+1 555 0100", "", "+15550100"),
    ("0044 20 7946 0000", "1", "+442079460000"),
    ("020 7946 0000", "44", "+442079460000"),
    ("(555) 010-0199", "1", "+15550100199"),
    ("1 555 010 0199", "1", "+15550100199"),  # NANP with its own 1: not prefixed twice
    ("15550100199", "44", "+4415550100199"),  # elsewhere a 1 is just a digit
    ("030 1234567", "49", "+49301234567"),
])  # fmt: skip
def test_e164_with_a_default_country(raw: str, country: str, expected: str) -> None:
    assert to_e164(raw, country) == expected


@pytest.mark.parametrize("raw", ["5550100", "020 7946 0000"])
def test_no_country_no_guess(raw: str) -> None:
    with pytest.raises(InvalidInput, match="default_country"):
        to_e164(raw, "")


def test_parse_trunk_normalises_and_hides_the_password() -> None:
    trunk = parse_trunk({**BASE, "numbers": ["020 7946 0000", "+442079460000"],
                         "codecs": ["pcmu", "opus"], "failover_address": "192.0.2.2"}, "44")
    assert trunk.numbers == ("+442079460000",)
    assert trunk.address.port == 5070 and trunk.failover is not None
    assert trunk.failover.port == 5060 and trunk.codecs == ("PCMU", "OPUS")
    shown = trunk.as_json()
    assert "password" not in shown and shown["has_password"] is True
    assert "s3cret" not in repr(trunk) and "s3cret" not in str(shown)
    assert parse_trunk({**BASE, "transport": "tls", "address": "carrier.example"}).address.port \
        == 5061


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "Bad Name!"}, "name"),
    ({"transport": "sctp"}, "transport"),
    ({"address": "192.0.2.1:99999"}, "port"),
    ({"address": "bad host"}, "address"),
    ({"register": True, "password": ""}, "password"),
    ({"expires": 5}, "expires"),
    ({"expires": True}, "expires"),
    ({"numbers": ["abc"]}, "number"),
    ({"numbers": "+15550100"}, "numbers"),
    ({"allowed_addresses": ["192.0.2.0/33"]}, "allowed_addresses"),
    ({"media_encryption": "sometimes"}, "media_encryption"),
    ({"allowed_destinations": ["1555"]}, "allowed_destinations"),
    ({"codecs": ["GSM"]}, "codecs"),
    ({"auth": "yes"}, "auth"),
    ({"colour": "red"}, "unknown field"),
])  # fmt: skip
def test_bad_trunks_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_trunk({**BASE, **change})


def test_store_keeps_trunks_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db" / "switchboard.db"
    with Store(path) as store:
        store.add_trunk(parse_trunk(BASE))
        with pytest.raises(Conflict, match="already exists"):
            store.add_trunk(parse_trunk(BASE))
        with pytest.raises(Conflict, match="belong"):
            store.add_trunk(parse_trunk({**BASE, "name": "other"}))
    with Store(path) as store:
        trunk = store.trunk("CARRIER")
        assert trunk is not None and trunk.password == "s3cret pw"
        assert [t.name for t in store.trunks()] == ["carrier"]
        store.delete_trunk("carrier")
        with pytest.raises(NotFound):
            store.delete_trunk("carrier")
        assert store.trunks() == []


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE rooms (name TEXT PRIMARY KEY, pin TEXT NOT NULL UNIQUE, "
               "created REAL NOT NULL)")
    db.execute("INSERT INTO rooms VALUES ('standup', '12345678', 0)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        assert store.room("standup") is not None
        store.add_trunk(parse_trunk(BASE))
        assert store.trunk("carrier") is not None
