"""Issue 13's pure parts: several NATS URLs, a database per service, advisory lock keys,
the gateway's round-robin over replicas and the embedded cluster's command lines."""

from pathlib import Path

import pytest

from estatedesk.embedded import EmbeddedNats
from estatedesk.gateway import Replicas
from estatedesk.supervisor import ServiceProcess
from shared.bus import ticket_stream_config
from shared.db import advisory_key
from shared.settings import Settings, database_url_for, nats_replicas, nats_servers


def test_comma_separated_nats_urls_become_a_server_list():
    assert nats_servers("nats://a:4222, nats://b:4222,,nats://c:4222") == [
        "nats://a:4222", "nats://b:4222", "nats://c:4222"]
    assert nats_servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]
    with pytest.raises(ValueError):
        nats_servers(" , ")


def test_a_service_database_falls_back_to_the_shared_one():
    env = {"ESTATEDESK_DATABASE_URL": "postgresql://shared/db",
           "ESTATEDESK_DATABASE_URL_ANALYTICS": "postgresql://reports/db"}
    assert database_url_for("analytics", env) == "postgresql://reports/db"
    assert database_url_for("dispatch", env) == "postgresql://shared/db"
    assert database_url_for("dispatch", {}) is None


def test_settings_of_a_service_read_its_own_database_and_the_replication():
    env = {"ESTATEDESK_NATS_URL": "nats://a:4222,nats://b:4222", "ESTATEDESK_SIGNING_KEY": "k",
           "ESTATEDESK_DATABASE_URL_ARCHIVE": "postgresql://archive/db", "ESTATEDESK_NATS_REPLICAS": "3"}
    settings = Settings.from_env(env, service="archive")
    assert settings.database_url == "postgresql://archive/db"
    assert settings.nats_servers == ["nats://a:4222", "nats://b:4222"]
    assert settings.nats_replicas == 3
    with pytest.raises(SystemExit, match="ESTATEDESK_DATABASE_URL"):
        Settings.from_env(env, service="intake")  # no database of its own, none shared


def test_replication_defaults_to_one_copy():
    assert nats_replicas({}) == 1
    assert ticket_stream_config().num_replicas == 1
    assert ticket_stream_config(3).num_replicas == 3


def test_advisory_keys_are_stable_signed_64_bit_and_distinct():
    key = advisory_key("estatedesk:dispatch:sla-scan")
    assert key == advisory_key("estatedesk:dispatch:sla-scan")
    assert -(2 ** 63) <= key < 2 ** 63
    assert key != advisory_key("estatedesk:callback:overdue-scan")


def test_replicas_are_taken_in_turn_each_list_holding_every_replica():
    replicas = Replicas(["http://a", "http://b", "http://c"])
    turns = [replicas.in_turn() for _ in range(4)]
    assert [turn[0] for turn in turns] == ["http://a", "http://b", "http://c", "http://a"]
    assert all(sorted(turn) == ["http://a", "http://b", "http://c"] for turn in turns)
    assert Replicas("http://only").in_turn() == ["http://only"]


def test_a_cluster_node_routes_to_the_other_nodes(tmp_path: Path):
    node = EmbeddedNats(tmp_path, 4222, 8222, node="n1", cluster_port=6222, routes=(6222, 6223, 6224))
    command = node.command()
    assert command[command.index("--cluster") + 1] == "nats://127.0.0.1:6222"
    assert command[command.index("--routes") + 1] == "nats://127.0.0.1:6223,nats://127.0.0.1:6224"
    assert command[command.index("-n") + 1] == "n1" and node.name == "nats-server n1"
    assert "--cluster" not in EmbeddedNats(tmp_path, 4222, 8222).command()


def test_replicas_have_their_own_labels():
    first = ServiceProcess("dispatch", 1, {}, Path("x.log"))
    second = ServiceProcess("dispatch", 2, {}, Path("y.log"), replica=1)
    assert (first.label, second.label) == ("dispatch", "dispatch#1")
