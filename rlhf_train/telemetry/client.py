"""Reading a run's events with one iterator, live or after the fact (`rlhf-train watch`, the TUI).
Importable without torch.

    run_dir = resolve_run("latest")                  # or a run directory, or a run id under runs/
    for event in iter_events(run_dir, since_seq=0):  # protocol.Event, `hello` first, ends after `end`
        ...

A running run with a live socket (path in `run.json`) is streamed from the socket; a finished,
failed or stopped run — or one whose socket is gone — is replayed from `events.jsonl`, and with
`follow=True` a running run without a socket is tailed. Whatever the source, the sequence is the
same: the run's `hello` event first (when the run has one), then the events with `seq > since_seq`
in strictly increasing order, with a drop notice (`event.dropped > 0`) where a slow reader lost
events on the socket (they are in `events.jsonl`), ending after the `end` event.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from rlhf_train.errors import RunError
from rlhf_train.telemetry.protocol import Event, decode_lines
from rlhf_train.telemetry.runs import process_alive

RUNNING = "running"
POLL_S = 0.2
"""How often a followed file is checked for new events."""
END_GRACE_S = 2.0
"""How long a followed file is still read after the run stopped running (its `end` event is
written just after run.json says how it ended)."""
CHUNK = 64 * 1024


class RunNotFound(RunError):
    """A run spec that names no run directory; the message says what was looked for."""


class EventTimeout(RunError):
    """No event arrived within the `timeout` given to `iter_events`."""


# ---------------------------------------------------------------------------------------------
# Finding a run


def read_run_info(run_dir: str | Path) -> dict:
    """The run's `run.json` as a dict; `RunNotFound` when there is none or it is unreadable."""
    path = Path(run_dir) / "run.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunNotFound(f"{Path(run_dir)} is not a run directory (it has no run.json)") from None
    except (OSError, ValueError) as exc:
        raise RunNotFound(f"cannot read {path}: {exc}") from None
    if not isinstance(info, dict):
        raise RunNotFound(f"{path} is not a run record (expected a JSON object)")
    return info


def _start_key(run_dir: Path) -> tuple[float, str]:
    """Sort key: the start time in run.json (its mtime when unreadable), then the name."""
    try:
        start = datetime.fromisoformat(str(read_run_info(run_dir)["start"])).timestamp()
    except (RunNotFound, KeyError, ValueError, TypeError):
        try:
            start = (run_dir / "run.json").stat().st_mtime
        except OSError:
            start = 0.0
    return start, run_dir.name


def _runs_under(root: Path) -> list[Path]:
    try:
        return [d for d in root.iterdir() if d.is_dir() and (d / "run.json").is_file()]
    except OSError:
        return []


def resolve_run(spec: str | Path, runs_root: str | Path = "runs") -> Path:
    """The run directory `spec` names: a run directory path, a run id (or a unique prefix of one)
    under `runs_root`, or `latest` (the newest run by start time). `RunNotFound` otherwise."""
    root = Path(runs_root)
    text = str(spec)
    if text == "latest":
        runs = _runs_under(root)
        if not runs:
            raise RunNotFound(f"no runs under {root}/ (start one with `rlhf-train PRESET.toml`, or point --root "
                              "at the directory holding run directories)")
        return max(runs, key=_start_key)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "run.json").is_file():
            return path
        raise RunNotFound(f"{path} is not a run directory (it has no run.json)")
    under = root / text
    if (under / "run.json").is_file():
        return under
    if "/" not in text and text:
        matches = sorted(d for d in _runs_under(root) if d.name.startswith(text))
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(d.name for d in matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise RunNotFound(f"{text!r} matches {len(matches)} runs under {root}/ ({names}); give a full run id, "
                              "or 'latest'")
    raise RunNotFound(f"no run {text!r}: it is neither a run directory nor a run id under {root}/ "
                      "(`rlhf-train runs` lists them)")


# ---------------------------------------------------------------------------------------------
# Reading events


class _Cursor:
    """What has been yielded: the `hello` header first, then strictly increasing `seq > since`.
    Events before the header are held back until it comes (or the run ends without one)."""

    def __init__(self, since: int):
        self.last = since
        self.started = False
        self.header_seq: int | None = None
        self.held: list[Event] = []
        self.ended = False

    def feed(self, event: Event) -> Iterator[Event]:
        if not self.started:
            if event.type == "hello":
                self.started, self.header_seq = True, event.seq
                yield event
                for held in self.held:
                    yield from self._accept(held)
                self.held = []
            elif event.type == "end":
                yield from self.release()
                yield from self._accept(event)
            else:
                self.held.append(event)
            return
        yield from self._accept(event)

    def release(self) -> Iterator[Event]:
        """The run has no hello (it ended before one): what was held back, in order."""
        self.started = True
        held, self.held = self.held, []
        for event in held:
            yield from self._accept(event)

    def _accept(self, event: Event) -> Iterator[Event]:
        if event.seq <= self.last or event.seq == self.header_seq:
            return
        self.last = event.seq
        self.ended = event.type == "end"
        yield event


def _decode_lines(data: bytes) -> tuple[list[Event], bytes]:
    """Events of the complete lines in `data` (lines that are not events are skipped), and the
    incomplete rest."""
    lines = data.split(b"\n")
    rest = lines.pop()
    return decode_lines(lines), rest


def _connect(path: str, timeout: float | None) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0 if timeout is None else min(timeout, 5.0))
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _from_socket(sock: socket.socket, cursor: _Cursor, timeout: float | None) -> Iterator[Event]:
    """Stream until `end` (cursor.ended) or until the server goes away (then the caller falls back
    to the file)."""
    try:
        sock.sendall((json.dumps({"since_seq": cursor.last}) + "\n").encode())
        sock.settimeout(timeout)
        rest = b""
        while True:
            try:
                data = sock.recv(CHUNK)
            except socket.timeout:
                raise EventTimeout(f"no event from the run's socket for {timeout:g} s") from None
            except OSError:
                return
            if not data:
                return
            events, rest = _decode_lines(rest + data)
            for event in events:
                yield from cursor.feed(event)
                if cursor.ended:
                    return
    finally:
        sock.close()


def _from_file(run_dir: Path, cursor: _Cursor, follow: bool, timeout: float | None, poll_s: float) -> Iterator[Event]:
    """Replay `events.jsonl`; with `follow`, keep reading while the run is running (its process
    alive), until `end`."""
    path = run_dir / "events.jsonl"
    f = None
    rest = b""
    last_event = time.monotonic()
    stopped_at: float | None = None
    try:
        while True:
            if f is None:
                try:
                    f = path.open("rb")
                except FileNotFoundError:
                    f = None
            chunk = f.read(CHUNK) if f is not None else b""
            if chunk:
                events, rest = _decode_lines(rest + chunk)
                for event in events:
                    for out in cursor.feed(event):
                        last_event = time.monotonic()
                        yield out
                    if cursor.ended:
                        return
                continue
            if not follow:
                break
            now = time.monotonic()
            try:
                info = read_run_info(run_dir)
                running = info.get("status") == RUNNING and process_alive(info.get("pid"))
            except RunNotFound:
                running = False
            if not running:
                stopped_at = stopped_at if stopped_at is not None else now
                if now - stopped_at >= END_GRACE_S:
                    break
            elif timeout is not None and now - last_event > timeout:
                raise EventTimeout(f"no new event in {path} for {timeout:g} s")
            time.sleep(poll_s)
    finally:
        if f is not None:
            f.close()
    yield from cursor.release()


def iter_events(run_dir: str | Path, since_seq: int = 0, follow: bool = True, timeout: float | None = None,
                poll_s: float = POLL_S) -> Iterator[Event]:
    """The run's events: its `hello` first, then those with `seq > since_seq`, ending after `end`.

    `follow=True`: a running run is streamed live from its socket (or its file is tailed when it
    has no socket, or the socket goes away) until its `end` event — or until its process is gone
    without one (a crash). `follow=False`: only what `events.jsonl` holds now.
    `timeout`: the longest wait, in seconds, for the next event of a running run before
    `EventTimeout` (None: as long as the run lives). `RunNotFound` when `run_dir` has no run.json.
    """
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    cursor = _Cursor(max(0, int(since_seq)))
    if follow and info.get("status") == RUNNING and info.get("socket"):
        sock = _connect(str(info["socket"]), timeout)
        if sock is not None:
            yield from _from_socket(sock, cursor, timeout)
            if cursor.ended:
                return
    yield from _from_file(run_dir, cursor, follow, timeout, poll_s)
