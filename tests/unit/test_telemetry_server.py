"""The live telemetry socket and its client, with real Unix sockets, a real Emitter and synthetic
events (no torch): privacy, path fallback, ordering across the file→live switch, slow and broken
viewers, resuming with since_seq, closing; `iter_events` and `resolve_run`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest

from rlhf_train.telemetry.client import EventTimeout, RunNotFound, iter_events, resolve_run
from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.protocol import Event, decode_event, read_events_file
from rlhf_train.telemetry.server import CHUNK, MAX_SOCKET_PATH, TelemetryServer, socket_path_for

pytestmark = pytest.mark.timeout(120)


def wait_until(condition, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Viewer:
    """A real socket client: sends `request` (raw bytes) if given, reads lines on a thread once
    `start_reading()` is called (a frozen viewer simply never calls it)."""

    def __init__(self, path: Path, request: bytes | None = b'{"since_seq": 0}\n', read: bool = True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        if request is not None:
            self.sock.sendall(request)
        self.lines: list[bytes] = []
        self.eof = threading.Event()
        self._thread: threading.Thread | None = None
        if read:
            self.start_reading()

    def start_reading(self) -> None:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        rest = b""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                parts = (rest + data).split(b"\n")
                rest = parts.pop()
                self.lines.extend(parts)
        except OSError:
            pass
        finally:
            self.eof.set()

    @property
    def events(self) -> list[Event]:
        return [decode_event(line) for line in list(self.lines)]

    def wait_eof(self, timeout: float = 30.0) -> list[Event]:
        assert self.eof.wait(timeout), "the server did not close the connection"
        return self.events

    def close(self) -> None:
        try:  # shutdown first: a close() alone does not end a recv() blocked on another thread
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def streaming(server: TelemetryServer, n: int) -> bool:
    return sum(v.state == "streaming" for v in server.viewers()) >= n


def check_stream(events: list[Event], all_seqs: list[int], since: int = 0) -> tuple[list[int], int]:
    """Asserts the viewer contract: hello first, then strictly increasing seq, where the seqs
    received plus those covered by drop notices are exactly the run's seqs after `since` (minus the
    hello). Returns (seqs received as events, events reported dropped)."""
    assert events and events[0].type == "hello", [e.type for e in events[:3]]
    hello_seq = events[0].seq
    seqs = [e.seq for e in events[1:]]
    assert seqs == sorted(set(seqs)), "seq must increase strictly after the hello"
    received, covered, dropped = [], set(), 0
    for event in events[1:]:
        if event.dropped:
            first = event.get("first_dropped_seq")
            assert event.seq - first + 1 == event.dropped
            covered.update(range(first, event.seq + 1))
            dropped += event.dropped
        else:
            received.append(event.seq)
    expected = [s for s in all_seqs if s > since and s != hello_seq]
    assert not covered & set(received)
    assert sorted(covered | set(received)) == expected
    return received, dropped


@pytest.fixture
def emitter(tmp_path):
    em = Emitter(tmp_path / "events.jsonl")
    yield em
    em.close()


@pytest.fixture
def server(emitter, tmp_path):
    srv = TelemetryServer(emitter, tmp_path).start()
    yield srv
    srv.close()


def file_seqs(emitter: Emitter) -> list[int]:
    return [e.seq for e in read_events_file(emitter.path)]


def emit_metrics(emitter: Emitter, n: int, start_step: int = 1) -> None:
    for step in range(start_step, start_step + n):
        emitter.emit("metric", step=step, values={"reward/mean": step / 10, "perf/step_s": 0.1})


# ---------------------------------------------------------------------------------------------
# Where the socket is


def test_socket_is_private_in_the_run_dir_and_removed_on_close(emitter, tmp_path):
    srv = TelemetryServer(emitter, tmp_path).start()
    try:
        assert srv.path == tmp_path.absolute() / "telemetry.sock"
        mode = os.stat(srv.path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    finally:
        srv.close()
    assert not srv.path.exists()
    probe = socket.socket(socket.AF_UNIX)
    with pytest.raises(OSError):
        probe.connect(str(srv.path))
    probe.close()


@pytest.mark.parametrize("runtime", ["xdg", "tmp"])
def test_long_run_dir_falls_back_to_a_short_private_path(tmp_path, monkeypatch, request, runtime):
    run_dir = tmp_path / ("a" * 60) / ("b" * 60)
    run_dir.mkdir(parents=True)
    assert len(str(run_dir / "telemetry.sock")) > 107
    xdg = Path(tempfile.mkdtemp(prefix="x", dir="/tmp"))  # short, whatever pytest's basetemp is
    request.addfinalizer(lambda: shutil.rmtree(xdg, ignore_errors=True))
    if runtime == "xdg":
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    else:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    em = Emitter(run_dir / "events.jsonl")
    em.emit("hello", run="long")
    srv = TelemetryServer(em, run_dir).start()
    try:
        assert len(os.fsencode(str(srv.path))) <= MAX_SOCKET_PATH
        expected_dir = xdg / "rlhf-train" if runtime == "xdg" else Path(f"/tmp/rlhf-train-{os.getuid()}")
        assert srv.path.parent == expected_dir
        assert stat.S_IMODE(os.stat(srv.path.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o600
        assert socket_path_for(run_dir).parent == expected_dir
        viewer = Viewer(srv.path)
        em.emit("end", status="finished", reason="")
        assert [e.type for e in viewer.wait_eof()] == ["hello", "end"]
    finally:
        srv.close()
        em.close()
    assert not srv.path.exists()


def test_a_stale_socket_file_is_replaced(emitter, tmp_path):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "telemetry.sock"))
    stale.close()  # the file stays, nobody listens: what a killed run leaves behind
    srv = TelemetryServer(emitter, tmp_path).start()
    try:
        emitter.emit("hello", run="r")
        assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o600
        viewer = Viewer(srv.path)
        emitter.emit("end", status="finished", reason="")
        assert [e.type for e in viewer.wait_eof()] == ["hello", "end"]
    finally:
        srv.close()


def test_a_live_socket_is_not_stolen(emitter, tmp_path):
    with TelemetryServer(emitter, tmp_path) as first:
        with pytest.raises(OSError, match="in use by another live server"):
            TelemetryServer(emitter, tmp_path).start()
        assert first.path.exists()


# ---------------------------------------------------------------------------------------------
# Ordering


def test_fast_viewer_gets_hello_then_every_event_in_order_then_eof_after_end(emitter, server):
    emitter.emit("hello", run="r1")
    emit_metrics(emitter, 200)  # before the viewer: from the file
    viewer = Viewer(server.path)
    wait_until(lambda: streaming(server, 1), what="the viewer to attach")
    emit_metrics(emitter, 2000, start_step=201)  # live
    emitter.emit("end", status="finished", reason="")
    events = viewer.wait_eof()
    assert [e.seq for e in events] == list(range(1, 2203)) == file_seqs(emitter)
    assert events[0].type == "hello" and events[-1].type == "end" and events[-1].get("status") == "finished"
    assert [e.get("step") for e in events if e.type == "metric"] == list(range(1, 2201))
    assert [line.decode() for line in viewer.lines] == emitter.path.read_text().splitlines()


def test_viewer_that_sends_nothing_streams_from_the_start_after_the_handshake_window(emitter, server):
    emitter.emit("hello", run="r1")
    emit_metrics(emitter, 5)
    viewer = Viewer(server.path, request=None)
    time.sleep(0.7)  # longer than the 0.5 s the server waits for a request
    emitter.emit("end", status="finished", reason="")
    assert [e.seq for e in viewer.wait_eof()] == list(range(1, 8))


def test_reconnect_with_since_seq_gets_exactly_the_missing_events_then_live(emitter, server):
    emitter.emit("hello", run="r1")
    emit_metrics(emitter, 99)  # seq 2..100
    viewers = {k: Viewer(server.path, request=json.dumps({"since_seq": k}).encode() + b"\n") for k in (0, 1, 40, 100)}
    wait_until(lambda: streaming(server, len(viewers)), what="viewers to attach")
    emit_metrics(emitter, 20, start_step=100)  # seq 101..120, live
    emitter.emit("end", status="finished", reason="")
    for k, viewer in viewers.items():
        events = viewer.wait_eof()
        assert events[0].type == "hello" and events[0].seq == 1
        assert [e.seq for e in events[1:]] == list(range(max(k, 1) + 1, 122)), k


def test_switch_from_file_to_live_has_no_gap_and_no_duplicate_under_concurrent_emits(emitter, server):
    """Viewers attach while another thread emits as fast as it can: each gets exactly
    since+1..end, whatever instant its file→live switch happened at."""
    emitter.emit("hello", run="r1")
    emit_metrics(emitter, 500)
    stop = threading.Event()

    def pump():
        step = 1000
        while not stop.is_set() and step < 40_000:
            emitter.emit("metric", step=step, values={"x": 1.0})
            step += 1
            if step % 50 == 0:
                time.sleep(0.001)  # fast, but not so fast that every viewer must drop

    thread = threading.Thread(target=pump)
    thread.start()
    try:
        viewers = []
        for k in (0, 3, 250, 499):
            viewers.append((k, Viewer(server.path, request=f'{{"since_seq": {k}}}\n'.encode())))
            time.sleep(0.05)
        # one that asks from the live edge: whatever seq is current when it connects
        edge = emitter.last_seq
        viewers.append((edge, Viewer(server.path, request=f'{{"since_seq": {edge}}}\n'.encode())))
        wait_until(lambda: streaming(server, len(viewers)), what="viewers to attach")
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    emitter.emit("end", status="finished", reason="")
    all_seqs = file_seqs(emitter)
    for k, viewer in viewers:
        received, dropped = check_stream(viewer.wait_eof(), all_seqs, since=k)
        if dropped == 0:
            assert received == [s for s in all_seqs if s > max(k, 1)]


def test_viewer_attached_before_the_hello_gets_it_first(emitter, server):
    """While models load the run may emit (gpu samples) before its hello: the viewer still gets
    the hello first, then everything else in order."""
    emitter.emit("gpu", devices=[], host={}, reason="no GPU")  # seq 1
    viewer = Viewer(server.path)
    wait_until(lambda: any(v.state == "waiting" for v in server.viewers()), what="the viewer to wait for hello")
    emitter.emit("gpu", devices=[], host={}, reason="no GPU")  # seq 2, live
    emitter.emit("hello", run="r1")  # seq 3
    emit_metrics(emitter, 3)  # 4..6
    emitter.emit("end", status="finished", reason="")  # 7
    events = viewer.wait_eof()
    assert [(e.seq, e.type) for e in events] == [(3, "hello"), (1, "gpu"), (2, "gpu"), (4, "metric"),
                                                 (5, "metric"), (6, "metric"), (7, "end")]
    # the client presents a replayed run the same way
    assert [(e.seq, e.type) for e in iter_events(_finished_run(emitter), follow=False)] == [
        (e.seq, e.type) for e in events]


def test_run_that_ends_before_its_hello_still_streams(emitter, server):
    viewer = Viewer(server.path)
    wait_until(lambda: any(v.state == "waiting" for v in server.viewers()), what="the viewer to attach")
    emitter.emit("log", level="error", message="model not found")
    emitter.emit("end", status="failed", reason="model not found")
    assert [e.type for e in viewer.wait_eof()] == ["log", "end"]


# ---------------------------------------------------------------------------------------------
# Slow viewers never slow the run


def test_frozen_viewer_never_blocks_emit_and_learns_what_it_missed(emitter, tmp_path):
    limit, n = 1000, 50_000
    srv = TelemetryServer(emitter, tmp_path, queue_limit=limit).start()
    try:
        emitter.emit("hello", run="r1")
        frozen = Viewer(srv.path, read=False)  # sends its request, then never reads
        fast = Viewer(srv.path)
        wait_until(lambda: streaming(srv, 2), what="viewers to attach")

        done = threading.Event()
        durations: list[float] = []

        def produce():
            for step in range(1, n + 1):
                t0 = time.perf_counter()
                emitter.emit("metric", step=step, values={"reward/mean": 0.5, "perf/step_s": 0.1})
                durations.append(time.perf_counter() - t0)
            done.set()

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        # a blocking socket write anywhere on the emit path would hang here forever
        assert done.wait(90), f"emit stalled after {len(durations)} of {n} events"
        by_id = {v.id: v for v in srv.viewers()}
        frozen_stats = min(by_id.values(), key=lambda v: v.id)
        assert frozen_stats.max_queued <= limit and frozen_stats.dropped > 0
        assert all(v.max_queued <= limit for v in by_id.values())

        emitter.emit("end", status="finished", reason="")
        frozen.start_reading()  # it wakes up
        all_seqs = file_seqs(emitter)
        assert len(all_seqs) == n + 2
        frozen_events = frozen.wait_eof()
        received, dropped = check_stream(frozen_events, all_seqs)
        assert dropped == n + 1 - len(received) and dropped >= frozen_stats.dropped > 0
        assert frozen_events[-1].type == "end"
        notices = [e for e in frozen_events if e.dropped]
        assert notices and all(e.type == "log" and e.get("level") == "warning" for e in notices)
        check_stream(fast.wait_eof(), all_seqs)  # the fast one may lose some too, but says so
        # what reached the frozen viewer is bounded: its queue, one send chunk, the kernel's buffer
        sndbuf = frozen.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        shortest = min(len(line) for line in frozen.lines) + 1
        assert len(received) <= limit + (4 * sndbuf + 2 * CHUNK) // shortest
        print(f"\n50k emits with a frozen viewer: total {sum(durations):.2f} s, "
              f"median {sorted(durations)[n // 2] * 1e6:.0f} µs, frozen viewer dropped {dropped}")
    finally:
        srv.close()


# ---------------------------------------------------------------------------------------------
# Broken viewers


def test_malformed_and_hostile_viewers_are_ignored_and_logged(emitter, server, caplog):
    caplog.set_level(logging.INFO, logger="rlhf_train.telemetry")
    emitter.emit("hello", run="r1")
    emit_metrics(emitter, 10)
    requests = (b"garbage\n", b"[1, 2, 3]\n", b'{"since_seq": -3}\n', b'{"since_seq": "x"}\n',
                b'{"since_seq": 2, "extra": true}\nmore junk after the request\n', b"\xff\xfe\n")
    keep = [(request, Viewer(server.path, request=request)) for request in requests]
    huge = Viewer(server.path, request=None, read=False)  # 1 MiB without a newline, then frozen
    huge_sender = threading.Thread(target=lambda: huge.sock.sendall(b"x" * (1 << 20)), daemon=True)
    huge_sender.start()
    huge_line = Viewer(server.path, request=b"y" * (1 << 20) + b"\n")
    half = socket.socket(socket.AF_UNIX)
    half.connect(str(server.path))
    half.sendall(b'{"since_')
    half.close()  # closes half-way through its request
    silent = Viewer(server.path, request=None, read=False)  # connects, never sends, never reads
    shut = Viewer(server.path, request=b'{"since_seq": 0}\n')
    shut.sock.shutdown(socket.SHUT_WR)  # half-open: will not send more, still reads
    for _ in range(50):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(server.path))
        s.close()
    huge_sender.join(30)
    assert not huge_sender.is_alive(), "the server stopped reading a client's input"

    good = Viewer(server.path)
    emit_metrics(emitter, 10, start_step=11)
    emitter.emit("end", status="finished", reason="")
    all_seqs = file_seqs(emitter)
    assert [e.seq for e in good.wait_eof()] == all_seqs
    assert [e.seq for e in shut.wait_eof()] == all_seqs
    assert [e.seq for e in huge_line.wait_eof()] == all_seqs
    for request, viewer in keep:  # a malformed request means "from the start"; the valid one resumes at 2
        expected = [1] + all_seqs[2:] if request.startswith(b'{"since_seq": 2') else all_seqs
        assert [e.seq for e in viewer.wait_eof()] == expected, request
    # every connection was served to its `end` or dropped when it went away
    wait_until(lambda: server.viewers() == [], what="finished and dead viewers to be dropped")
    text = caplog.text
    assert text.count("malformed request") == 5 and text.count("request longer than 65536 bytes") == 2
    assert "in the middle of its request" in text and "after its request" in text
    assert server._thread is not None and server._thread.is_alive()
    huge.close()
    silent.close()


def test_too_many_viewers_are_refused_not_fatal(emitter, tmp_path):
    srv = TelemetryServer(emitter, tmp_path, max_viewers=3).start()
    try:
        emitter.emit("hello", run="r1")
        viewers = [Viewer(srv.path) for _ in range(3)]
        wait_until(lambda: streaming(srv, 3))
        extra = Viewer(srv.path, request=None)
        assert extra.wait_eof() == []  # refused: closed without a byte
        viewers[0].close()
        emitter.emit("metric", step=1, values={})
        wait_until(lambda: len(srv.viewers()) == 2, what="the closed viewer to be dropped")
        late = Viewer(srv.path)  # there is room again
        wait_until(lambda: streaming(srv, 3))
        emitter.emit("end", status="finished", reason="")
        assert [e.seq for e in late.wait_eof()] == [1, 2, 3]
    finally:
        srv.close()


# ---------------------------------------------------------------------------------------------
# Closing


def test_close_flushes_viewers_and_does_not_wait_on_a_frozen_one(emitter, tmp_path):
    srv = TelemetryServer(emitter, tmp_path).start()
    emitter.emit("hello", run="r1")
    frozen = Viewer(srv.path, read=False)
    reader = Viewer(srv.path)
    wait_until(lambda: streaming(srv, 2))
    emit_metrics(emitter, 3000)  # more than the frozen viewer's socket buffer holds
    t0 = time.monotonic()
    srv.close(timeout=2.0)  # no `end`: close() itself ends the connections
    assert 1.5 < time.monotonic() - t0 < 8  # it gave the frozen viewer its deadline, no more
    assert not srv.path.exists()
    assert [e.seq for e in reader.wait_eof()] == file_seqs(emitter)  # the reader got everything queued
    frozen.start_reading()
    frozen_seqs = [e.seq for e in frozen.wait_eof()]
    assert frozen_seqs == list(range(1, len(frozen_seqs) + 1)) and len(frozen_seqs) < 3001


# ---------------------------------------------------------------------------------------------
# The client: iter_events and resolve_run


def _write_run_json(run_dir: Path, status: str, socket_path: str | None = None,
                    start: str = "2025-01-01T00:00:00+00:00", pid: int | None = None) -> None:
    info = {"id": run_dir.name, "name": "t", "pid": os.getpid() if pid is None else pid, "pgid": 0, "status": status,
            "start": start, "socket": socket_path}
    (run_dir / "run.json").write_text(json.dumps(info))


def _finished_run(emitter: Emitter) -> Path:
    _write_run_json(emitter.path.parent, "finished")
    return emitter.path.parent


def test_iter_events_streams_a_running_run_from_its_socket(emitter, server, tmp_path):
    _write_run_json(tmp_path, "running", str(server.path))
    emitter.emit("hello", run="r1")
    emit_metrics(emitter, 50)
    got: list[Event] = []
    reader = threading.Thread(target=lambda: got.extend(iter_events(tmp_path, since_seq=20, timeout=30)))
    reader.start()
    wait_until(lambda: streaming(server, 1), what="iter_events to connect")
    emit_metrics(emitter, 50, start_step=51)
    emitter.emit("end", status="finished", reason="")
    reader.join(30)
    assert not reader.is_alive()
    assert [e.seq for e in got] == [1] + list(range(21, 103))
    assert got[-1].type == "end"


def test_iter_events_replays_a_finished_run_like_the_file(emitter, tmp_path):
    emitter.emit("hello", run="r1")
    emit_metrics(emitter, 30)
    emitter.emit("end", status="finished", reason="")
    with emitter.path.open("a") as f:
        f.write('{"v": 1, "seq": 33, "t": 1.0, "type": "met')  # a torn last line (a crash mid-write)
    _write_run_json(tmp_path, "finished", str(tmp_path / "gone.sock"))
    assert [e.seq for e in iter_events(tmp_path)] == file_seqs(emitter) == list(range(1, 33))
    assert [e.seq for e in iter_events(tmp_path, since_seq=30)] == [1, 31, 32]


def test_iter_events_tails_the_file_when_the_socket_is_gone(emitter, tmp_path):
    _write_run_json(tmp_path, "running", str(tmp_path / "no-such.sock"))
    emitter.emit("hello", run="r1")
    got: list[Event] = []
    reader = threading.Thread(target=lambda: got.extend(iter_events(tmp_path, poll_s=0.02, timeout=30)))
    reader.start()
    wait_until(lambda: len(got) == 1, what="the hello")
    emit_metrics(emitter, 5)
    wait_until(lambda: len(got) == 6, what="tailed events")
    _write_run_json(tmp_path, "finished")
    emitter.emit("end", status="finished", reason="")
    reader.join(30)
    assert [e.seq for e in got] == list(range(1, 8))


def test_iter_events_ends_when_a_running_run_died_without_end(emitter, tmp_path):
    dead = 2 ** 22 + 12345  # above the default pid_max of many systems; surely not alive
    _write_run_json(tmp_path, "running", None, pid=dead)
    emitter.emit("hello", run="r1")
    emit_metrics(emitter, 3)
    t0 = time.monotonic()
    assert [e.seq for e in iter_events(tmp_path, poll_s=0.02)] == [1, 2, 3, 4]
    assert time.monotonic() - t0 < 10


def test_iter_events_timeout_on_a_silent_running_run(emitter, tmp_path):
    _write_run_json(tmp_path, "running", None)
    emitter.emit("hello", run="r1")
    with pytest.raises(EventTimeout, match="no new event"):
        list(iter_events(tmp_path, poll_s=0.02, timeout=0.3))


def test_resolve_run(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    for name, start in (("tiny-cpu-20250101T000000Z", "2025-01-01T00:00:00+00:00"),
                        ("tiny-cpu-20250301T000000Z", "2025-03-01T00:00:00+00:00"),
                        ("other-20250201T000000Z", "2025-02-01T00:00:00+00:00")):
        (root / name).mkdir(parents=True)
        _write_run_json(root / name, "finished", start=start)
    (root / "not-a-run").mkdir()
    assert resolve_run("latest", root) == root / "tiny-cpu-20250301T000000Z"
    assert resolve_run("other-20250201T000000Z", root) == root / "other-20250201T000000Z"
    assert resolve_run("other", root) == root / "other-20250201T000000Z"  # a unique prefix
    assert resolve_run(str(root / "tiny-cpu-20250101T000000Z"), "elsewhere") == root / "tiny-cpu-20250101T000000Z"
    with pytest.raises(RunNotFound, match="matches 2 runs"):
        resolve_run("tiny-cpu", root)
    with pytest.raises(RunNotFound, match="no run 'nope'"):
        resolve_run("nope", root)
    with pytest.raises(RunNotFound, match="no run.json"):
        resolve_run(str(root / "not-a-run"), root)
    with pytest.raises(RunNotFound, match="no runs under"):
        resolve_run("latest", tmp_path / "empty")
    with pytest.raises(RunNotFound, match="no run.json"):
        list(iter_events(root / "not-a-run"))


# ---------------------------------------------------------------------------------------------
# The emitter's side of the contract


def test_subscribe_splits_file_and_live_at_last_seq_and_a_failing_sink_cannot_stop_emit(tmp_path, caplog):
    em = Emitter(tmp_path / "events.jsonl")
    em.emit("hello", run="r1")
    em.emit("metric", step=1, values={})
    live: list[tuple[int, str]] = []
    snapshot = em.subscribe(lambda seq, type_, line: live.append((seq, type_)))
    assert snapshot == em.last_seq == 2 and [e.seq for e in read_events_file(em.path)] == [1, 2]
    em.sinks.append(lambda line: 1 / 0)
    assert em.emit("metric", step=2, values={}) == 3  # the broken sink is logged, not raised
    assert live == [(3, "metric")] and "telemetry sink" in caplog.text
    assert (em.hello_seq, em.hello_line) == (1, em.path.read_text().splitlines()[0])
    em.close()


def test_a_continued_events_file_keeps_numbering(tmp_path):
    em = Emitter(tmp_path / "events.jsonl")
    for step in range(5):
        em.emit("metric", step=step, values={})
    em.close()
    with (tmp_path / "events.jsonl").open("a") as f:
        f.write('{"v": 1, "seq": 6, "t": 1.0, "type": "met')  # torn by a crash
    em = Emitter(tmp_path / "events.jsonl")
    assert em.last_seq == 5
    assert em.emit("hello", run="again") == 6
    em.close()
    assert [e.seq for e in read_events_file(tmp_path / "events.jsonl")] == [1, 2, 3, 4, 5, 6]
