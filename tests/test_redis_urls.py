"""NOTIFICATIONS_REDIS_URL's forms (one server, Sentinel, Cluster), the
errors that name the setting, the Celery broker they configure, and which
redis-server the test helpers pick."""

from __future__ import annotations

import os
import stat

import pytest

from flask_notifications import Notifications
from flask_notifications._redis import celery_broker, parse_redis_url
from flask_notifications.errors import ConfigurationError
from flask_notifications.testing import find_redis_server, redis_version


def test_one_server_urls_keep_working():
    for url in ("redis://h:1/2", "rediss://:pw@h:1/0", "unix:///run/redis.sock?db=3"):
        assert parse_redis_url(url).kind == "redis"
        assert celery_broker(url) == (url, {})


def test_sentinel_url():
    parsed = parse_redis_url(
        "redis+sentinel://user:p%40ss@s1:26380,[::1],s3:1/mymaster/4?sentinel_password=sp"
    )
    assert parsed.kind == "sentinel" and parsed.service == "mymaster" and parsed.db == 4
    assert parsed.nodes == [("s1", 26380), ("::1", 26379), ("s3", 1)]
    assert (parsed.username, parsed.password, parsed.sentinel_password) == ("user", "p@ss", "sp")
    assert parse_redis_url("redis+sentinel://s1/mymaster").db == 0
    url, options = celery_broker("redis+sentinel://:pw@s1:1,s2:2/mymaster/4?sentinel_password=sp")
    assert url == "sentinel://:pw@s1:1/4;sentinel://:pw@s2:2/4"
    assert options == {"master_name": "mymaster", "sentinel_kwargs": {"password": "sp"}}


def test_cluster_url():
    parsed = parse_redis_url("rediss+cluster://:pw@n1:7000,n2:7001")
    assert parsed.kind == "cluster" and parsed.tls and parsed.password == "pw"
    assert parsed.nodes == [("n1", 7000), ("n2", 7001)]
    with pytest.raises(ConfigurationError, match="CELERY_BROKER_URL"):
        celery_broker("redis+cluster://n1:7000")


@pytest.mark.parametrize(
    "url",
    [
        "localhost:6379",
        "http://h/0",
        "redis+sentinel://s1:26379",  # no master name
        "redis+sentinel://s1:26379/m/x",  # db not a number
        "redis+sentinel://s1:port/m",
        "redis+sentinel://s1/m?timeout=1",
        "redis+cluster://n1:7000/3",  # a cluster has db 0 only
        "redis+cluster://:secret@,n2:1",
        "redis://h:99999999/0",
    ],
)
def test_a_bad_url_is_a_configuration_error_naming_the_setting(make_app, url):
    with pytest.raises(ConfigurationError, match="NOTIFICATIONS_REDIS_URL") as error:
        Notifications(make_app(NOTIFICATIONS_REDIS_URL=url))
    assert "secret" not in str(error.value)  # passwords never in messages


@pytest.mark.parametrize("value", [-1, "1", True, 1.5])
def test_wait_replicas_is_checked(make_app, value):
    with pytest.raises(ConfigurationError, match="NOTIFICATIONS_REDIS_WAIT_REPLICAS"):
        Notifications(make_app(NOTIFICATIONS_REDIS_WAIT_REPLICAS=value))


def fake_redis_server(directory, version):
    directory.mkdir()
    path = directory / "redis-server"
    path.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=0 bits=64'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_redis_7_wins_over_an_older_one_first_on_path(tmp_path, monkeypatch):
    old = fake_redis_server(tmp_path / "venv", "6.2.14")
    new = fake_redis_server(tmp_path / "system", "7.0.15")
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "venv"), str(tmp_path / "system")]))
    assert redis_version(old) == (6, 2, 14) and redis_version(new) == (7, 0, 15)
    found = find_redis_server()
    assert found == new or redis_version(found) >= (7,)  # /usr/bin may hold one too
    monkeypatch.setenv("PATH", str(tmp_path / "venv"))
    assert redis_version(find_redis_server()) >= (6,)  # an older one when it is all there is
