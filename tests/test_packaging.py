"""The documented module paths and names, and the packaging promises."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
from pathlib import Path

import pytest

import flask_notifications

from .conftest import ROOT

DOCUMENTED = {
    "flask_notifications": [
        "Notifications", "Event", "EventHub", "current_notifications", "__version__",
    ],
    "flask_notifications.event": ["Event"],
    "flask_notifications.event_filter": ["EventFilter", "Not"],
    "flask_notifications.event_hub": ["EventHub", "register_consumer", "current_notifications"],
    "flask_notifications.consumers": ["Consumer", "PushConsumer", "LogConsumer"],
    "flask_notifications.consumers.consumer": ["Consumer"],
    "flask_notifications.consumers.push_consumer": ["PushConsumer"],
    "flask_notifications.consumers.log_consumer": ["LogConsumer"],
    "flask_notifications.filters": [
        "Always", "Never", "Not", "WithEventType", "WithSender", "WithRecipients",
        "IncludesRecipient", "WithId", "BeforeDate", "AfterDate", "Expired", "WithTag",
    ],
    "flask_notifications.filters.with_event_type": ["WithEventType"],
    "flask_notifications.filters.before_date": ["BeforeDate"],
    "flask_notifications.pubsub.backend": ["Backend"],
    "flask_notifications.pubsub.redis_pubsub": ["RedisPubSub"],
}  # fmt: skip


@pytest.mark.parametrize(("module", "names"), DOCUMENTED.items())
def test_documented_names_import(module, names):
    mod = importlib.import_module(module)
    for name in names:
        assert hasattr(mod, name), f"{module}.{name}"


def test_public_api_is_explicit():
    assert set(flask_notifications.__all__) >= {
        "Notifications",
        "Event",
        "EventHub",
        "current_notifications",
    }
    for name in flask_notifications.__all__:
        assert hasattr(flask_notifications, name)


def test_py_typed_and_metadata():
    assert (Path(flask_notifications.__file__).parent / "py.typed").is_file()
    meta = importlib.metadata.metadata("Flask-Notifications")
    assert meta["Version"] == flask_notifications.__version__
    assert meta["Requires-Python"] == ">=3.11"
    requires = importlib.metadata.requires("Flask-Notifications") or []
    runtime = {re.split(r"[<>=\[ ;]", r)[0].lower() for r in requires if "extra ==" not in r}
    assert runtime == {
        "flask", "flask-celeryext", "celery", "redis", "gevent", "blinker", "sse", "sqlalchemy",
        "tzdata",  # only on Windows (sys_platform marker): zoneinfo's database for digests
    }  # fmt: skip
    assert all(re.search(r">=\d", r) for r in requires if "extra ==" not in r), requires
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"mail", "tests", "docs", "demo", "i18n"} <= extras


def test_no_python2_shims():
    for path in Path(flask_notifications.__file__).parent.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import six|from six)", text, re.M), path
        assert not re.search(r"^\s*(import|from) (c?pickle|dill|cloudpickle)\b", text, re.M), path


def test_project_files():
    for name in ("README.md", "LICENSE", "setup.py", "pyproject.toml", "run-tests.sh", ".ci/run"):
        assert (ROOT / name).is_file(), name
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()
    assert os.access(ROOT / "run-tests.sh", os.X_OK) and os.access(ROOT / ".ci/run", os.X_OK)
    assert "./run-tests.sh" in (ROOT / ".ci/run").read_text()


def test_wheel_ships_templates_and_catalogs(tmp_path):
    """The built wheel holds the e-mail templates and every translation
    catalog (the ``.po`` sources and the compiled ``.mo`` files)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    # Built from a copy of what the sdist holds, so nothing lands in the tree.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "flask_notifications", source / "flask_notifications",
        ignore=shutil.ignore_patterns("__pycache__"),
    )  # fmt: skip
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True, timeout=600,
    )  # fmt: skip
    (wheel,) = out.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "flask_notifications"
    catalogs = sorted(package.glob("translations/*/LC_MESSAGES/flask_notifications.*"))
    assert {p.suffix for p in catalogs} == {".po", ".mo"}
    expected = [
        *catalogs,
        package / "translations" / "flask_notifications.pot",
        *package.glob("templates/flask_notifications/mail/*"),
    ]
    for path in expected:
        name = path.relative_to(ROOT).as_posix()
        assert name in names, name
