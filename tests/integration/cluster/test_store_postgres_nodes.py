"""The Store on PostgreSQL as a cluster uses it: several nodes on one database, migrations
run once, writers serialised across nodes, and a lost database that fails calls quickly with
StoreError instead of hanging them, then comes back by itself."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from peers.postgres import start_postgres

from dialplan.models import Conflict
from dialplan.store import SCHEMA_VERSION, Store, StoreError
from dialplan.trunks import parse_trunk


def test_two_nodes_see_each_others_rooms_numbers_and_trunks(postgres_url: str) -> None:
    with Store(postgres_url) as a, Store(postgres_url) as b:
        room = a.create_room("standup", "48213077")
        a.add_number("+15550101", "room", "standup", display="hide")
        a.add_trunk(parse_trunk({"name": "carrier", "address": "127.0.0.1:5070",
                                 "numbers": ["+15550102"]}))
        assert b.room("STANDUP") == room
        assert b.room_by_pin("48213077") == room
        number = b.number("+15550101")
        assert number is not None and number.room == "standup"
        trunk = b.trunk("carrier")
        assert trunk is not None and trunk.numbers == ("+15550102",)
        with pytest.raises(Conflict):
            b.create_room("other", "48213077")  # the PIN is taken on the other node
        assert b.schema_version == SCHEMA_VERSION
    with Store(postgres_url) as again:  # a node restarted finds it all
        assert again.room("standup") == room
        assert again.stats() == {"rooms": 1, "numbers": 1}


def test_schema_is_versioned_and_created_times_keep_their_precision(postgres_url: str) -> None:
    with Store(postgres_url, clock=lambda: 1765000000.123456) as s:
        assert s.create_room("r").created == 1765000000.123456
        assert s.room("r").created == 1765000000.123456  # type: ignore[union-attr]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute("SELECT version FROM switchboard_schema").fetchall()
        assert row == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    Store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE switchboard_schema SET version = version + 1")
    with pytest.raises(StoreError, match="newer"):
        Store(postgres_url)


def test_nodes_starting_together_migrate_once(postgres_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            Store(postgres_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with Store(postgres_url) as s:
        assert s.schema_version == SCHEMA_VERSION


def test_concurrent_nodes_never_hand_out_one_pin_twice(postgres_url: str) -> None:
    stores = [Store(postgres_url) for _ in range(4)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(store: Store, i: int) -> None:
        try:
            store.create_room(f"r{i}", "55501234")
            result = "made"
        except Conflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in stores:
        s.close()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "made"]


def test_a_lost_connection_fails_fast_and_comes_back(postgres_url: str) -> None:
    with Store(postgres_url) as store:
        store.create_room("standup", "48213077")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'switchboard'")
        began = time.monotonic()
        with pytest.raises(StoreError, match="unreachable"):
            store.room_by_pin("48213077")
        with pytest.raises(StoreError):  # while down: at once, no waiting on a reconnect
            store.room_by_pin("48213077")
        assert time.monotonic() - began < 1.0
        assert store.health() is False
        deadline = time.monotonic() + 10
        while not store.health():
            assert time.monotonic() < deadline, "the store did not reconnect within 10 s"
            time.sleep(0.2)
        record = store.room_by_pin("48213077")
        assert record is not None and record.name == "standup"


def test_a_dead_database_never_hangs_a_call() -> None:
    """A server of its own (this test stops it): every call during the outage returns
    StoreError within the short timeouts; started again, the store finds it by itself."""
    instance = start_postgres()
    try:
        url = instance.url()
        store = Store(url)
        store.create_room("standup", "48213077")
        instance.process.stop()  # the folder goes too: this server is not coming back
        durations = []
        for _ in range(5):
            began = time.monotonic()
            with pytest.raises(StoreError):
                store.room_by_pin("48213077")
            durations.append(time.monotonic() - began)
        assert max(durations) < 3.0, durations
        store.close()
    finally:
        instance.process.stop()
    with pytest.raises(StoreError, match="cannot connect"):
        Store(url)
