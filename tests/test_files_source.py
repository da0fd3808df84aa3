"""The manifests-directory source: files on disk -> watch-shaped events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import watchfiles

from ingressd.model import ObjectKey
from ingressd.pipeline.channel import UpdateChannel
from ingressd.store import EventType, Kind, ManifestsSource, Store, WatchEvent
from ingressd.store.sources import files

ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED

INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
spec:
  rules:
  - host: {host}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {{name: web, port: {{number: 80}}}}
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  ports: [{{port: {port}}}]
"""


class Recorder:
    """A sink that keeps the events it is handed."""

    def __init__(self) -> None:
        self.events: list[WatchEvent] = []

    def __call__(self, event: WatchEvent) -> None:
        self.events.append(event)

    def take(self) -> list[tuple[str, str, str | None, str]]:
        """``(type, kind, namespace, name)`` of the events since the last call."""
        out = [
            (
                e.type.value,
                e.object["kind"],
                e.object["metadata"].get("namespace"),
                e.object["metadata"]["name"],
            )
            for e in self.events
        ]
        self.events.clear()
        return out


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    return path


@pytest.fixture
def source(manifests: Path) -> ManifestsSource:
    return ManifestsSource(manifests, poll_interval=0.02, wall_clock=lambda: 1_795_633_200.0)


@pytest.fixture
def sink() -> Recorder:
    return Recorder()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- reading -----------------------------------------------------------------------------------


def test_multi_document_yaml_yields_every_object(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    write(
        manifests / "app.yaml",
        "---\n"
        + INGRESS.format(name="web", host="a.com")
        + "---\n"
        + SERVICE.format(name="web", namespace="shop", port=80)
        + "---\n# only a comment\n---\n",
    )
    source.load_once(sink)
    assert sorted(sink.take()) == [
        ("ADDED", "Ingress", "default", "web"),
        ("ADDED", "Service", "shop", "web"),
    ]


def test_list_kinds_are_expanded(manifests: Path, source: ManifestsSource, sink: Recorder) -> None:
    write(
        manifests / "list.yaml",
        """\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: a}}
- {apiVersion: v1, kind: Secret, metadata: {name: b}}
---
apiVersion: networking.k8s.io/v1
kind: IngressList
items:
- metadata: {name: c}
  spec: {}
---
kind: ServiceList
items: []
""",
    )
    source.load_once(sink)
    events = {(e.object["kind"], e.object["metadata"]["name"]): e for e in sink.events}
    assert set(events) == {("Service", "a"), ("Secret", "b"), ("Ingress", "c")}
    assert events["Ingress", "c"].object["apiVersion"] == "networking.k8s.io/v1"


def test_json_files_are_read(manifests: Path, source: ManifestsSource, sink: Recorder) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}}
    write(manifests / "svc.json", json.dumps(service))
    write(
        manifests / "list.json",
        json.dumps(
            {
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": "s", "namespace": "x"},
                    }
                ],
            }
        ),
    )
    source.load_once(sink)
    assert sorted(sink.take()) == [
        ("ADDED", "Secret", "x", "s"),
        ("ADDED", "Service", "default", "api"),
    ]


def test_namespace_defaults_for_namespaced_kinds_only(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    write(
        manifests / "a.yaml",
        """\
kind: ConfigMap
apiVersion: v1
metadata: {name: cm, namespace: null}
---
kind: IngressClass
apiVersion: networking.k8s.io/v1
metadata: {name: nginx, namespace: ignored}
spec: {controller: k8s.io/ingress-nginx}
""",
    )
    source.load_once(sink)
    assert sorted(sink.take()) == [
        ("ADDED", "ConfigMap", "default", "cm"),
        ("ADDED", "IngressClass", None, "nginx"),
    ]


def test_recursive_and_hidden_files_are_skipped(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    svc = SERVICE.format(name="{}", namespace="default", port=80)
    write(manifests / "deep" / "er" / "one.yml", svc.replace("{}", "one"))
    write(manifests / ".hidden.yaml", svc.replace("{}", "hidden-file"))
    write(manifests / ".git" / "x.yaml", svc.replace("{}", "hidden-dir"))
    write(manifests / "notes.txt", svc.replace("{}", "text-file"))
    write(manifests / "deep" / "two.yaml~", svc.replace("{}", "backup"))
    source.load_once(sink)
    assert sink.take() == [("ADDED", "Service", "default", "one")]


def test_timestamps_in_yaml_stay_strings(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    write(
        manifests / "a.yaml",
        "kind: Ingress\nmetadata:\n  name: old\n  creationTimestamp: 2020-01-01T00:00:00Z\n"
        "  annotations: {day: 2020-01-01}\n",
    )
    source.load_once(sink)
    meta = sink.events[0].object["metadata"]
    assert meta["creationTimestamp"] == "2020-01-01T00:00:00Z"
    assert meta["annotations"] == {"day": "2020-01-01"}


# -- synthetic metadata ------------------------------------------------------------------------


def test_objects_get_resource_version_uid_and_first_seen_timestamp(
    manifests: Path, sink: Recorder
) -> None:
    now = [1_795_633_200.0]
    source = ManifestsSource(manifests, wall_clock=lambda: now[0])
    write(manifests / "a.yaml", INGRESS.format(name="web", host="a.com"))
    source.load_once(sink)
    first = sink.events[0].object["metadata"]
    assert first["creationTimestamp"] == "2026-11-25T19:00:00Z"
    assert first["uid"]

    now[0] += 3600
    write(manifests / "a.yaml", INGRESS.format(name="web", host="changed.com"))
    source.load_once(sink)
    second = sink.events[1].object["metadata"]
    assert sink.events[1].type is MODIFIED
    assert second["creationTimestamp"] == first["creationTimestamp"]
    assert second["uid"] == first["uid"]
    assert int(second["resourceVersion"]) > int(first["resourceVersion"])


def test_given_uid_and_creation_timestamp_are_kept(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    write(
        manifests / "a.yaml",
        "kind: Service\nmetadata: {name: s, uid: u-1, creationTimestamp: '2020-01-01T00:00:00Z'}\n",
    )
    source.load_once(sink)
    meta = sink.events[0].object["metadata"]
    assert (meta["uid"], meta["creationTimestamp"]) == ("u-1", "2020-01-01T00:00:00Z")


# -- changes -----------------------------------------------------------------------------------


def test_file_added_modified_and_removed(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    source.load_once(sink)
    assert sink.events == []
    write(manifests / "svc.yaml", SERVICE.format(name="s", namespace="default", port=80))
    source.load_once(sink)
    assert sink.take() == [("ADDED", "Service", "default", "s")]

    write(manifests / "svc.yaml", SERVICE.format(name="s", namespace="default", port=81))
    source.load_once(sink)
    assert sink.take() == [("MODIFIED", "Service", "default", "s")]
    assert sink.events == []

    (manifests / "svc.yaml").unlink()
    source.load_once(sink)
    assert sink.take() == [("DELETED", "Service", "default", "s")]
    source.load_once(sink)
    assert sink.events == []


def test_rewriting_a_file_unchanged_emits_nothing(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    text = SERVICE.format(name="s", namespace="default", port=80)
    write(manifests / "svc.yaml", text)
    source.load_once(sink)
    sink.take()
    write(manifests / "svc.yaml", "# reformatted\n" + text)
    source.load_once(sink)
    assert sink.events == []


def test_single_documents_inside_a_file_are_diffed(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    def svc(name: str, port: int) -> str:
        return "---\n" + SERVICE.format(name=name, namespace="default", port=port)

    path = manifests / "all.yaml"
    write(path, svc("a", 80) + svc("b", 80) + svc("c", 80))
    source.load_once(sink)
    sink.take()

    write(path, svc("a", 80) + svc("b", 8080) + svc("d", 80))
    source.load_once(sink)
    assert sorted(sink.take()) == [
        ("ADDED", "Service", "default", "d"),
        ("DELETED", "Service", "default", "c"),
        ("MODIFIED", "Service", "default", "b"),
    ]


def test_same_size_rewrite_right_after_a_read_is_seen(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    path = manifests / "svc.yaml"
    write(path, SERVICE.format(name="s", namespace="default", port=80))
    source.load_once(sink)
    stat = path.stat()
    write(path, SERVICE.format(name="s", namespace="default", port=81))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime, same inode
    source.load_once(sink)
    assert sink.take()[-1] == ("MODIFIED", "Service", "default", "s")


# -- broken files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Service\nmetadata: {name: s\n", "line 3"),
        ("- just\n- a list\n", "document 1: expected a mapping"),
        ("metadata: {name: s}\n", "document 1: missing kind"),
        ("kind: Service\nmetadata: {}\n", "metadata.name"),
        ("kind: List\nitems:\n- kind: Service\n  metadata: {namespace: x}\n", "items[0]"),
    ],
)
def test_broken_file_keeps_last_good_objects_and_is_reported(
    manifests: Path, source: ManifestsSource, sink: Recorder, text: str, message: str
) -> None:
    path = manifests / "svc.yaml"
    write(path, SERVICE.format(name="good", namespace="default", port=80))
    source.load_once(sink)
    sink.take()

    write(path, text)
    with structlog.testing.capture_logs() as logs:
        source.load_once(sink)
    assert sink.events == []
    assert message in source.errors[path]
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [(w["path"], w["error"]) for w in warnings] == [(str(path), source.errors[path])]

    # Fixed: the new version applies against the last good one.
    write(path, SERVICE.format(name="fixed", namespace="default", port=80))
    source.load_once(sink)
    assert sorted(sink.take()) == [
        ("ADDED", "Service", "default", "fixed"),
        ("DELETED", "Service", "default", "good"),
    ]
    assert source.errors == {}


def test_json_syntax_error_gives_line_and_column(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    path = manifests / "bad.json"
    write(path, '{"kind": "Service",\n "metadata": {"name": "s",}}')
    source.load_once(sink)
    assert "line 2 column" in source.errors[path]
    assert sink.events == []


def test_broken_file_removed_clears_its_error_and_objects(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    path = manifests / "svc.yaml"
    write(path, SERVICE.format(name="s", namespace="default", port=80))
    source.load_once(sink)
    write(path, "kind: [")
    source.load_once(sink)
    sink.take()
    path.unlink()
    source.load_once(sink)
    assert sink.take() == [("DELETED", "Service", "default", "s")]
    assert source.errors == {}


def test_missing_directory_is_reported(tmp_path: Path, sink: Recorder) -> None:
    source = ManifestsSource(tmp_path / "nope")
    source.load_once(sink)
    assert sink.events == []
    assert source.errors == {tmp_path / "nope": "no such directory"}


# -- duplicates --------------------------------------------------------------------------------


def test_duplicate_object_first_file_in_sorted_order_wins(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    write(manifests / "b.yaml", SERVICE.format(name="s", namespace="default", port=2))
    write(manifests / "a.yaml", SERVICE.format(name="s", namespace="default", port=1))
    with structlog.testing.capture_logs() as logs:
        source.load_once(sink)
    assert [e.object["spec"]["ports"] for e in sink.events] == [[{"port": 1}]]
    (warning,) = [entry for entry in logs if entry["event"] == "manifest_duplicate_object"]
    assert warning["used"] == str(manifests / "a.yaml")
    assert warning["ignored"] == [str(manifests / "b.yaml")]
    sink.take()

    # Editing the losing copy changes nothing; removing the winner hands over to it.
    write(manifests / "b.yaml", SERVICE.format(name="s", namespace="default", port=3))
    source.load_once(sink)
    assert sink.events == []
    (manifests / "a.yaml").unlink()
    source.load_once(sink)
    assert sink.events[0].type is MODIFIED
    assert sink.events[0].object["spec"]["ports"] == [{"port": 3}]


def test_duplicate_inside_one_file_keeps_the_first(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    write(
        manifests / "a.yaml",
        SERVICE.format(name="s", namespace="default", port=1)
        + "---\n"
        + SERVICE.format(name="s", namespace="default", port=2),
    )
    with structlog.testing.capture_logs() as logs:
        source.load_once(sink)
    assert [e.object["spec"]["ports"] for e in sink.events] == [[{"port": 1}]]
    assert any(entry["event"] == "manifest_duplicate_object" for entry in logs)


# -- running -----------------------------------------------------------------------------------


async def test_run_applies_a_file_write_within_one_second(manifests: Path) -> None:
    channel = UpdateChannel()
    store = Store(channel=channel)
    source = ManifestsSource(manifests)  # default poll interval
    write(manifests / "a.yaml", INGRESS.format(name="first", host="a.com"))
    source.load_once(store.apply)
    task = asyncio.create_task(source.run(store.apply))
    try:
        write(manifests / "b.yaml", INGRESS.format(name="second", host="b.com"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        key = ObjectKey("default/second")
        while key not in store.snapshot().ingresses and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert key in store.snapshot().ingresses
        events = channel.get_nowait_all()
        assert [(e.kind, e.key) for e in events][-1] == (Kind.INGRESS, key)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_is_cancellable_and_hands_changes_in_order(
    manifests: Path, source: ManifestsSource, sink: Recorder
) -> None:
    task = asyncio.create_task(source.run(sink))
    write(manifests / "a.yaml", SERVICE.format(name="s", namespace="default", port=1))
    for _ in range(200):
        if sink.events:
            break
        await asyncio.sleep(0.01)
    (manifests / "a.yaml").unlink()
    for _ in range(200):
        if len(sink.events) == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.take() == [
        ("ADDED", "Service", "default", "s"),
        ("DELETED", "Service", "default", "s"),
    ]


_DEEP = 1_000


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "deep.json",
            '{"kind": "Service", "metadata": {"name": "s"}, "spec": '
            + "[" * _DEEP
            + "]" * _DEEP
            + "}",
            "",
        ),
        ("deep.yaml", "kind: Service\nmetadata: {name: s}\nspec: " + "[" * _DEEP + "]" * _DEEP, ""),
        (
            "shallow-but-over-limit.json",
            '{"kind": "Service", "metadata": {"name": "s"}, "spec": ' + "[" * 150 + "]" * 150 + "}",
            "nested deeper than 100 levels",
        ),
        (
            "digits.json",
            '{"kind": "Service", "metadata": {"name": "s"}, "port": ' + "9" * 5_000 + "}",
            "digits",
        ),
        (
            "digits.yaml",
            "kind: Service\nmetadata: {name: s}\nport: " + "9" * 5_000 + "\n",
            "digits",
        ),
    ],
)
def test_hostile_file_is_reported_and_the_source_keeps_reading(
    manifests: Path, source: ManifestsSource, sink: Recorder, name: str, text: str, message: str
) -> None:
    bad = manifests / name
    write(bad, text)
    source.load_once(sink)
    assert sink.events == []
    assert message in source.errors[bad]

    write(manifests / "svc.yaml", SERVICE.format(name="later", namespace="default", port=80))
    source.load_once(sink)
    assert sink.take() == [("ADDED", "Service", "default", "later")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"kind": "Service", "metadata": {"name": "s", "labels": {"a": "'
            + "x" * (1024 * 1024 + 1)
            + '"}}}',
            "a string of 1048577 characters",
        ),
        ('{"kind": "Service", "metadata": {"name": "s"}, "n": ' + "9" * 150 + "}", "digits"),
        ("\n".join(["---", "kind: Service", "metadata: {name: s}"] * 10_001), "documents"),
    ],
    ids=["long-string", "long-number", "many-documents"],
)
def test_a_file_over_a_limit_is_an_error_naming_the_limit(
    manifests: Path, source: ManifestsSource, sink: Recorder, text: str, message: str
) -> None:
    path = manifests / ("big.json" if text.startswith("{") else "big.yaml")
    write(path, text)
    source.load_once(sink)
    assert sink.events == []
    assert message in source.errors[path]


def test_a_file_over_the_size_limit_is_not_read(
    manifests: Path, source: ManifestsSource, sink: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingressd.store.sources import files

    monkeypatch.setattr(files, "MAX_FILE_BYTES", 1000)
    path = manifests / "svc.yaml"
    write(path, SERVICE.format(name="s", namespace="default", port=80) + "#" * 2000)
    source.load_once(sink)
    assert sink.events == []
    assert "larger than 1000 bytes" in source.errors[path]


# -- following the directory: inotify, polling fallback ----------------------------------------


async def until(check: Callable[[], object], timeout: float = 2.0) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(
    source: ManifestsSource, sink: Recorder, *, watching: bool = True
) -> AsyncIterator[None]:
    """``source.run(sink)`` in a task, its first pass made (and, when ``watching``, its watch
    in place); cancelled on the way out."""
    task = asyncio.create_task(source.run(sink))
    try:
        await until(lambda: source.passes >= 1 or task.done())
        if watching:
            await until(lambda: source.watching or task.done())
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class FakeWatch:
    """Stands for ``watchfiles.watch``: reports only what the test ``report``s, or fails."""

    def __init__(self, fail_at_start: Exception | None = None) -> None:
        self.fail_at_start = fail_at_start
        self.fail_later: Exception | None = None
        self.batches: queue.Queue[set[tuple[int, str]]] = queue.Queue()
        self.started = 0
        #: While set, the watch is still being set up (its first yield waits).
        self.setting_up = threading.Event()

    def report(self, *paths: Path) -> None:
        self.batches.put({(2, str(p)) for p in paths})

    def __call__(self, path: str, **kwargs: Any) -> Iterator[set[tuple[int, str]]]:
        if self.fail_at_start is not None:
            raise self.fail_at_start
        self.started += 1
        stop = kwargs["stop_event"]
        while self.setting_up.is_set() and not stop.is_set():
            time.sleep(0.005)
        yield set()  # the watch is in place
        while not stop.is_set():
            if self.fail_later is not None:
                raise self.fail_later
            try:
                yield self.batches.get(timeout=0.005)
            except queue.Empty:
                continue


@pytest.fixture
def fake_watch(monkeypatch: pytest.MonkeyPatch) -> FakeWatch:
    fake = FakeWatch()
    monkeypatch.setattr(watchfiles, "watch", fake)
    return fake


def quiet_source(manifests: Path, **kwargs: Any) -> ManifestsSource:
    """A source that neither polls nor beats nor resyncs on its own within a test."""
    options: dict[str, Any] = {
        "poll_interval": 3600.0,
        "heartbeat_interval": 3600.0,
        "resync_interval": 3600.0,
        "watch": True,
        **kwargs,
    }
    return ManifestsSource(manifests, **options)


async def test_a_write_is_seen_without_waiting_for_a_poll(manifests: Path, sink: Recorder) -> None:
    source = quiet_source(manifests)
    async with running(source, sink):
        assert source.watching
        loop = asyncio.get_running_loop()
        started = loop.time()
        write(manifests / "svc.yaml", SERVICE.format(name="s", namespace="default", port=80))
        await until(lambda: sink.events, timeout=1.0)
        assert loop.time() - started < 1.0
        assert sink.take() == [("ADDED", "Service", "default", "s")]


async def test_watched_changes_keep_the_semantics_of_a_walk(
    manifests: Path, sink: Recorder
) -> None:
    source = quiet_source(manifests)
    svc = SERVICE.format(name="{}", namespace="default", port=80)

    async def settle() -> list[tuple[str, str, str | None, str]]:
        # what the watcher brought in, then a walk that must find nothing more
        await asyncio.sleep(0.15)
        seen = sink.take()
        await source.rescan()
        assert sink.take() == []
        return seen

    async with running(source, sink):
        # atomic replace, as tools write: the hidden temporary file is not read
        tmp = manifests / ".a.yaml.tmp"
        tmp.write_text(svc.replace("{}", "a"))
        os.replace(tmp, manifests / "a.yaml")
        write(manifests / "notes.txt", svc.replace("{}", "text"))
        write(manifests / ".hidden" / "x.yaml", svc.replace("{}", "hidden"))
        assert await settle() == [("ADDED", "Service", "default", "a")]

        # a broken file keeps its last good objects; fixed, it applies
        write(manifests / "a.yaml", "kind: [")
        assert await settle() == []
        assert manifests / "a.yaml" in source.errors
        write(manifests / "a.yaml", svc.replace("{}", "b"))
        assert sorted(await settle()) == [
            ("ADDED", "Service", "default", "b"),
            ("DELETED", "Service", "default", "a"),
        ]
        assert source.errors == {}

        # the first file in sorted order wins a duplicate; removing it hands over
        write(manifests / "z.yaml", SERVICE.format(name="b", namespace="default", port=2))
        assert await settle() == []
        (manifests / "a.yaml").unlink()
        assert await settle() == [("MODIFIED", "Service", "default", "b")]

        # a new directory, a directory moved in, a directory removed or moved out
        write(manifests / "sub" / "deep" / "c.yaml", svc.replace("{}", "c"))
        outside = manifests.parent / "outside"
        write(outside / "d.yml", svc.replace("{}", "d"))
        os.rename(outside, manifests / "moved")
        assert sorted(await settle()) == [
            ("ADDED", "Service", "default", "c"),
            ("ADDED", "Service", "default", "d"),
        ]
        shutil.rmtree(manifests / "sub")
        os.rename(manifests / "moved", outside)
        assert sorted(await settle()) == [
            ("DELETED", "Service", "default", "c"),
            ("DELETED", "Service", "default", "d"),
        ]

        # a symlinked directory is not read, a symlinked file is
        (manifests / "linked-dir").symlink_to(outside)
        (manifests / "linked.yaml").symlink_to(outside / "d.yml")
        assert await settle() == [("ADDED", "Service", "default", "d")]


async def test_the_watcher_starts_once_a_missing_directory_appears(
    tmp_path: Path, sink: Recorder
) -> None:
    directory = tmp_path / "later"
    source = quiet_source(directory, heartbeat_interval=0.02)
    async with running(source, sink, watching=False):
        assert source.errors == {directory: "no such directory"}
        assert not source.watching
        write(directory / "svc.yaml", SERVICE.format(name="s", namespace="default", port=80))
        await until(lambda: sink.events)
        assert sink.take() == [("ADDED", "Service", "default", "s")]
        await until(lambda: source.watching)
        assert source.errors == {}

        # removed and made again: reported, then watched anew
        shutil.rmtree(directory)
        await until(lambda: sink.events)
        assert sink.take() == [("DELETED", "Service", "default", "s")]
        assert source.errors == {directory: "no such directory"}
        write(directory / "svc.yaml", SERVICE.format(name="t", namespace="default", port=80))
        await until(lambda: sink.events)
        await until(lambda: source.watching)
        write(directory / "more.yaml", SERVICE.format(name="u", namespace="default", port=80))
        await until(lambda: len(sink.events) == 2)
        assert sink.take() == [
            ("ADDED", "Service", "default", "t"),
            ("ADDED", "Service", "default", "u"),
        ]


async def test_polls_when_the_watcher_cannot_start(
    manifests: Path, sink: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeWatch(fail_at_start=OSError("OS file watch limit reached"))
    monkeypatch.setattr(watchfiles, "watch", fake)
    source = quiet_source(manifests, poll_interval=0.02)
    with structlog.testing.capture_logs() as logs:
        async with running(source, sink, watching=False):
            assert not source.watching
            write(manifests / "svc.yaml", SERVICE.format(name="s", namespace="default", port=80))
            await until(lambda: sink.events)
            passes = source.passes
            await until(lambda: source.passes >= passes + 3)  # polling, nothing changing
    assert sink.take() == [("ADDED", "Service", "default", "s")]
    (warning,) = [entry for entry in logs if entry["event"] == "manifests_watch_unavailable"]
    assert "watch limit reached" in warning["error"]


async def test_polls_when_the_watcher_fails_and_watches_again_later(
    manifests: Path, sink: Recorder, fake_watch: FakeWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "_WATCH_RETRY", 0.2)
    source = quiet_source(manifests, poll_interval=0.02)
    with structlog.testing.capture_logs() as logs:
        async with running(source, sink):
            assert source.watching
            fake_watch.fail_later = RuntimeError("error in underlying watcher: gone")
            await until(lambda: not source.watching)
            fake_watch.fail_later = None
            # no event will come: polling finds it
            write(manifests / "svc.yaml", SERVICE.format(name="s", namespace="default", port=80))
            await until(lambda: sink.events)
            await until(lambda: source.watching)
    assert fake_watch.started == 2
    assert sink.take() == [("ADDED", "Service", "default", "s")]
    events = [entry["event"] for entry in logs if entry["event"].startswith("manifests_watch")]
    assert events == ["manifests_watch_failed", "manifests_watching"]


async def test_polling_can_be_forced_by_the_environment(
    manifests: Path, sink: Recorder, fake_watch: FakeWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGRESSD_MANIFESTS_POLL", "1")
    source = ManifestsSource(manifests, poll_interval=0.02)
    assert not source.watch
    async with running(source, sink, watching=False):
        write(manifests / "svc.yaml", SERVICE.format(name="s", namespace="default", port=80))
        await until(lambda: sink.events)
        assert not source.watching
    assert fake_watch.started == 0
    monkeypatch.setenv("INGRESSD_MANIFESTS_POLL", "0")
    assert ManifestsSource(manifests).watch


async def test_rescan_walks_and_sees_what_no_event_reported(
    manifests: Path, sink: Recorder, fake_watch: FakeWatch
) -> None:
    source = quiet_source(manifests)
    async with running(source, sink):
        write(manifests / "svc.yaml", SERVICE.format(name="s", namespace="default", port=80))
        await asyncio.sleep(0.05)
        assert sink.events == []  # the fake watcher reported nothing
        await source.rescan()
        assert sink.take() == [("ADDED", "Service", "default", "s")]


async def test_a_burst_of_changes_is_read_by_a_walk(
    manifests: Path, sink: Recorder, fake_watch: FakeWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "_BURST_PATHS", 3)
    source = quiet_source(manifests)
    async with running(source, sink):
        for name in "abcde":
            write(
                manifests / f"{name}.yaml", SERVICE.format(name=name, namespace="default", port=1)
            )
        # inotify's queue overflowed: only three of the five were reported
        fake_watch.report(*(manifests / f"{name}.yaml" for name in "abc"))
        await until(lambda: len(sink.events) == 5)


async def test_passes_go_on_while_nothing_changes(
    manifests: Path, sink: Recorder, fake_watch: FakeWatch
) -> None:
    source = quiet_source(manifests, heartbeat_interval=0.02)
    async with running(source, sink):
        passes = source.passes
        await until(lambda: source.passes >= passes + 3)
        assert source.watching


async def test_heartbeat_reads_again_a_file_read_just_after_it_was_written(
    manifests: Path, sink: Recorder, fake_watch: FakeWatch
) -> None:
    source = quiet_source(manifests, heartbeat_interval=0.2)
    path = manifests / "svc.yaml"
    async with running(source, sink):
        write(path, SERVICE.format(name="s", namespace="default", port=80))
        fake_watch.report(path)
        await until(lambda: sink.events)
        # same size, same mtime, same inode, and no event: only the heartbeat can see it
        st = path.stat()
        write(path, SERVICE.format(name="s", namespace="default", port=81))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        await until(lambda: len(sink.events) == 2)
    assert sink.take()[-1] == ("MODIFIED", "Service", "default", "s")


async def test_a_symlinked_file_follows_its_target_swapped_as_a_configmap_volume_does(
    manifests: Path, sink: Recorder
) -> None:
    # <dir>/svc.yaml -> ..data/svc.yaml, ..data -> ..v1; an update writes ..v2 and swaps ..data
    source = quiet_source(manifests)
    write(manifests / "..v1" / "svc.yaml", SERVICE.format(name="s", namespace="default", port=1))
    (manifests / "..data").symlink_to("..v1")
    (manifests / "svc.yaml").symlink_to("..data/svc.yaml")
    async with running(source, sink):
        assert sink.take() == [("ADDED", "Service", "default", "s")]
        write(
            manifests / "..v2" / "svc.yaml", SERVICE.format(name="s", namespace="default", port=2)
        )
        (manifests / "..data_tmp").symlink_to("..v2")
        os.replace(manifests / "..data_tmp", manifests / "..data")
        await until(lambda: sink.events, timeout=1.0)
    assert sink.events[0].type is MODIFIED
    assert sink.events[0].object["spec"]["ports"] == [{"port": 2}]


async def test_passes_poll_while_the_watch_is_being_set_up(
    manifests: Path, sink: Recorder, fake_watch: FakeWatch
) -> None:
    fake_watch.setting_up.set()
    source = quiet_source(manifests, poll_interval=0.02)
    async with running(source, sink, watching=False):
        write(manifests / "svc.yaml", SERVICE.format(name="s", namespace="default", port=80))
        await until(lambda: sink.events)
        await source.rescan()
        assert not source.watching
        fake_watch.setting_up.clear()
        await until(lambda: source.watching)
    assert sink.take() == [("ADDED", "Service", "default", "s")]
