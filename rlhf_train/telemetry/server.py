"""The live telemetry socket (docs/telemetry.md, "The live socket"). Importable without torch.

    server = TelemetryServer(emitter, run_dir).start()   # binds <run dir>/telemetry.sock (0600)
    run_dir_info.socket = str(server.path)               # recorded in run.json
    ...                                                  # every emitted event reaches every viewer
    server.close()                                       # after the `end` event

A viewer connects and may send one line `{"since_seq": N}` within `handshake_s` (default 0.5 s;
N = 0 when it sends nothing). It then gets the run's `hello` event first, every event with
`seq > N` from `events.jsonl`, then live events: no gap and no duplicate across the switch, because
the viewer subscribes to the emitter (under its lock) at a known `seq` S and replays the file only
up to S. After `end` the server closes the connection.

Training never waits for a viewer. The emitting thread only appends the line to each viewer's
bounded queue (drop-oldest) and pokes a pipe; one server thread does all socket work with
non-blocking sends. A viewer whose queue overflowed gets, when it reads again, a drop notice
(`protocol.drop_notice`: a `log` event whose `seq` is the last dropped one, `dropped` = count) in
place of the lost events, which stay in `events.jsonl`. Whatever a viewer sends beyond its one
request (garbage, endless lines, half-closed or silent sockets) is read, ignored and logged on the
"rlhf_train.telemetry" logger; no viewer can stop the server.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import selectors
import socket
import stat
import struct
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rlhf_train.telemetry.emitter import Emitter
from rlhf_train.telemetry.protocol import ProtocolError, decode_event, drop_notice

log = logging.getLogger("rlhf_train.telemetry")

SOCKET_NAME = "telemetry.sock"
MAX_SOCKET_PATH = 100
"""Bytes. `sun_path` holds 108 bytes with the terminating NUL on Linux (104 on macOS); keep a margin."""
QUEUE_LIMIT = 10_000
"""Events queued per viewer before the oldest are dropped for it."""
REQUEST_MAX = 64 * 1024
HANDSHAKE_S = 0.5
MAX_VIEWERS = 64
CHUNK = 64 * 1024
"""Bytes moved from a viewer's queue (or the file) into its send buffer at a time."""

_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_HEAD = re.compile(rb'^\{"v": 1, "seq": (\d+), "t": [^,]+, "type": "(\w+)"')

_HANDSHAKE, _WAITING, _STREAMING = "handshake", "waiting", "streaming"


class SocketPathError(OSError):
    """No usable place for the socket (e.g. a runtime directory owned by someone else)."""


class SocketInUse(SocketPathError):
    """Another live server answers at the path (two runs in one run directory?)."""


# ---------------------------------------------------------------------------------------------
# Where the socket lives


def _private_dir(path: Path) -> Path:
    """`path` as a directory only this user can enter (created 0700); refuses one that is a
    symlink, not ours, or open to others (a squatted `/tmp/rlhf-train-<uid>`)."""
    try:
        path.mkdir(mode=0o700, parents=False, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise SocketPathError(f"cannot create {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise SocketPathError(f"{path} is not a directory owned by this user; remove it or set XDG_RUNTIME_DIR")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def runtime_dir() -> Path:
    """A short private directory for sockets: `$XDG_RUNTIME_DIR/rlhf-train` when that exists,
    else `<tmp>/rlhf-train-<uid>` (tmp = `/tmp` unless missing)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK | os.X_OK):
        try:
            return _private_dir(Path(xdg) / "rlhf-train")
        except SocketPathError as exc:
            log.warning("%s; using the temporary directory instead", exc)
    base = Path("/tmp") if os.path.isdir("/tmp") else Path(tempfile.gettempdir())
    return _private_dir(base / f"rlhf-train-{os.getuid()}")


def _fits(path: Path) -> bool:
    return len(os.fsencode(str(path))) <= MAX_SOCKET_PATH


def socket_path_for(run_dir: str | Path) -> Path:
    """`<run dir>/telemetry.sock` (absolute) when it fits the AF_UNIX limit, else a short unique
    name in `runtime_dir()`."""
    preferred = Path(run_dir).absolute() / SOCKET_NAME
    return preferred if _fits(preferred) else fallback_socket_path()


def fallback_socket_path() -> Path:
    path = runtime_dir() / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
    if not _fits(path):
        raise SocketPathError(f"the runtime directory {path.parent} is too long for a Unix socket path; "
                              "set XDG_RUNTIME_DIR to a short directory")
    return path


def _bind(path: Path) -> socket.socket:
    """A listening, non-blocking socket at `path`, mode 0600 before it accepts anyone (listen comes
    after chmod, and connecting to a bound socket that does not listen is refused)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketPathError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(0.2)
            probe.connect(str(path))
        except OSError:
            os.unlink(path)  # stale: left behind by a run that died
        else:
            raise SocketInUse(f"{path} is in use by another live server")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return sock


# ---------------------------------------------------------------------------------------------
# One viewer


def _peek(line: bytes) -> tuple[int, str] | None:
    """`(seq, type)` of an event line; None for a line that is not an event (a torn write)."""
    match = _HEAD.match(line)
    if match:
        return int(match.group(1)), match.group(2).decode()
    try:
        event = decode_event(line)
    except ProtocolError:
        return None
    return event.seq, event.type


class _Replay:
    """The events with `since < seq <= until` (except `skip`) from `events.jsonl`, read a chunk at
    a time so a long file never stalls the server thread or fills memory."""

    def __init__(self, path: Path, since: int, until: int, skip: int | None):
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._since, self._until, self._skip = since, until, skip
        self._rest = b""
        self.done = False

    def read(self, max_bytes: int) -> tuple[bytes, bool]:
        """Up to about `max_bytes` of lines; and whether an `end` event is among them."""
        out = bytearray()
        saw_end = False
        while not self.done and len(out) < max_bytes:
            chunk = self._file.read(CHUNK)
            if not chunk:  # anything left in _rest is a torn line or one newer than `until`
                self.close()
                break
            lines = (self._rest + chunk).split(b"\n")
            self._rest = lines.pop()
            for line in lines:
                head = _peek(line)
                if head is None:
                    continue
                seq, type_ = head
                if seq > self._until:
                    self.close()
                    break
                if seq > self._since and seq != self._skip:
                    out += line + b"\n"
                    saw_end = saw_end or type_ == "end"
                if seq == self._until:
                    self.close()
                    break
        return bytes(out), saw_end

    def close(self) -> None:
        self.done = True
        self._file.close()


@dataclass(frozen=True)
class ViewerStats:
    id: int
    pid: int | None
    state: str
    since: int
    queued: int
    max_queued: int
    dropped: int
    sent_bytes: int


class _Viewer:
    def __init__(self, server: "TelemetryServer", vid: int, sock: socket.socket, deadline: float):
        self.server, self.id, self.sock = server, vid, sock
        self.pid = _peer_pid(sock)
        self.state = _HANDSHAKE
        self.deadline = deadline
        self.inbuf = bytearray()
        self.read_closed = False
        self.ignored_bytes = 0
        self.since = 0
        self.snapshot = 0
        self.replay: _Replay | None = None
        self.header: tuple[int, str] | None = None
        self.send_header = False
        # shared with the emitting thread, under `lock`
        self.lock = threading.Lock()
        self.queue: deque[tuple[int, str, bool]] = deque()
        self.drop_first: int | None = None
        self.drop_last = 0
        self.dropped = 0
        self.max_queued = 0
        self.end_queued = False
        # server thread only
        self.out = b""
        self.out_off = 0
        self.blocked = False  # the last send would block: wait for EVENT_WRITE
        self.end_in_out = False
        self.mask = 0
        self.sent_bytes = 0

    def __repr__(self) -> str:
        return f"viewer #{self.id}" + (f" (pid {self.pid})" if self.pid else "")

    # -- emitting thread -------------------------------------------------------------------
    def offer(self, seq: int, type_: str, line: str) -> None:
        """Queue one event (called by the emitter under its lock: O(1), never touches the socket)."""
        with self.lock:
            if type_ == "hello" and self.header is None and seq == self.server.emitter.hello_seq:
                self.header = (seq, line)
            elif seq > self.since:
                if len(self.queue) >= self.server.queue_limit:
                    dropped_seq = self.queue.popleft()[0]
                    if self.drop_first is None:
                        self.drop_first = dropped_seq
                    self.drop_last = dropped_seq
                    self.dropped += 1
                self.queue.append((seq, line, type_ == "end"))
                if len(self.queue) > self.max_queued:
                    self.max_queued = len(self.queue)
                if type_ == "end":
                    self.end_queued = True
        self.server._wake()

    # -- server thread ---------------------------------------------------------------------
    def take(self, max_bytes: int) -> tuple[bytes, bool]:
        """A drop notice for what was lost (if anything), then queued lines up to `max_bytes`."""
        parts: list[str] = []
        size = 0
        saw_end = False
        skip = self.header[0] if self.header else None
        with self.lock:
            if self.drop_first is not None:
                parts.append(drop_notice(self.drop_first, self.drop_last, time.time()))
                self.drop_first = None
            while self.queue and size < max_bytes:
                seq, line, is_end = self.queue.popleft()
                if seq == skip:
                    continue
                parts.append(line)
                size += len(line)
                if is_end:
                    saw_end = True
                    break
        if not parts:
            return b"", False
        return ("\n".join(parts) + "\n").encode("utf-8"), saw_end

    def has_pending(self) -> bool:
        if self.state != _STREAMING or self.out_off < len(self.out) or self.replay is not None:
            return True
        with self.lock:
            return bool(self.queue) or self.drop_first is not None

    def stats(self) -> ViewerStats:
        with self.lock:
            queued = len(self.queue)
        return ViewerStats(self.id, self.pid, self.state, self.since, queued, self.max_queued, self.dropped,
                           self.sent_bytes)


def _peer_pid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[0] or None
    except (AttributeError, OSError, struct.error):
        return None


def _parse_request(line: bytes) -> int | None:
    """`since_seq` from `{"since_seq": N}`; None when the line is not such a request."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    since = obj.get("since_seq", 0)
    if not isinstance(since, int) or isinstance(since, bool) or since < 0:
        return None
    return since


# ---------------------------------------------------------------------------------------------
# The server


class TelemetryServer:
    """Serves an `Emitter`'s events on a Unix socket to any number of viewers.

    `path`: where to bind (default `socket_path_for(run_dir)`; `run_dir` defaults to the directory
    of the emitter's `events.jsonl`). `queue_limit`: events queued per viewer before the oldest are
    dropped for it. `handshake_s`: how long a new viewer has to send its `{"since_seq": N}` line.
    """

    def __init__(self, emitter: Emitter, run_dir: str | Path | None = None, *, path: str | Path | None = None,
                 queue_limit: int = QUEUE_LIMIT, handshake_s: float = HANDSHAKE_S, max_viewers: int = MAX_VIEWERS):
        if queue_limit < 1:
            raise ValueError("queue_limit must be at least 1")
        self.emitter = emitter
        self.events_path = emitter.path
        self.run_dir = Path(run_dir) if run_dir is not None else emitter.path.parent
        self._requested_path = Path(path) if path is not None else None
        self.path: Path | None = None
        self.queue_limit = queue_limit
        self.handshake_s = handshake_s
        self.max_viewers = max_viewers
        self._viewers: dict[int, _Viewer] = {}
        self._next_id = 1
        self._listener: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self._wake_r = self._wake_w = -1
        self._wake_pending = False
        self._closing = False
        self._close_deadline = 0.0
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "TelemetryServer":
        """Bind (falling back to a short runtime-dir path when the run dir is too long or cannot
        hold a socket) and start the server thread. Raises `OSError` when no socket can be made."""
        if self._requested_path is not None:
            self.path = self._requested_path.absolute()
            self._listener = _bind(self.path)
        else:
            preferred = socket_path_for(self.run_dir)
            try:
                self.path, self._listener = preferred, _bind(preferred)
            except OSError as exc:
                if isinstance(exc, SocketInUse) or preferred.parent != self.run_dir.absolute():
                    raise
                log.warning("cannot serve telemetry at %s (%s); using the runtime directory", preferred, exc)
                self.path = fallback_socket_path()
                self._listener = _bind(self.path)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="telemetry-server", daemon=True)
        self._thread.start()
        log.info("telemetry socket: %s", self.path)
        return self

    def close(self, timeout: float = 1.0) -> None:
        """Stop accepting (the socket file is removed at once), give every viewer up to `timeout`
        seconds to take what is queued for it, then close all connections."""
        if self._thread is None:
            return
        self._close_deadline = time.monotonic() + timeout
        self._closing = True
        self._wake(force=True)
        self._thread.join(timeout + 5.0)
        if self._thread.is_alive():  # not expected; never leave the socket file behind
            log.error("telemetry server thread did not stop")
            self._unlink()
        self._thread = None

    def __enter__(self) -> "TelemetryServer":
        return self if self._thread else self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def viewers(self) -> list[ViewerStats]:
        """A snapshot of the connected viewers."""
        return [v.stats() for v in list(self._viewers.values())]

    # -- any thread ----------------------------------------------------------------------------
    def _wake(self, force: bool = False) -> None:
        if self._wake_pending and not force:
            return
        self._wake_pending = True
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (so the thread will wake anyway) or closed (server gone)

    # -- server thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                if self._step():
                    break
            except Exception:  # noqa: BLE001 - the server must outlive its own bugs
                log.exception("telemetry server error (continuing)")
                time.sleep(0.05)
        self._shutdown()

    def _step(self) -> bool:
        """One round of the event loop; True when the server is done."""
        assert self._sel is not None
        for key, mask in self._sel.select(self._select_timeout()):
            if key.data == "listen":
                self._accept()
            elif key.data == "wake":
                try:  # drain first, then re-arm: a poke after the re-arm writes a new byte
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                self._wake_pending = False
            else:
                viewer: _Viewer = key.data
                if mask & selectors.EVENT_WRITE:
                    viewer.blocked = False
                if mask & selectors.EVENT_READ and viewer.id in self._viewers:
                    self._read(viewer)
        now = time.monotonic()
        for viewer in list(self._viewers.values()):
            try:
                if viewer.state == _HANDSHAKE and (now >= viewer.deadline or self._closing):
                    if not self._closing:
                        log.info("%s sent no request within %.1f s; streaming from the start", viewer, self.handshake_s)
                    self._attach(viewer, 0)
                if viewer.state == _WAITING:
                    self._maybe_ready(viewer)
                if viewer.state == _STREAMING and not viewer.blocked:
                    self._pump(viewer)
            except Exception:  # noqa: BLE001 - one viewer's trouble ends that viewer only
                log.exception("%s: unexpected error; disconnecting it", viewer)
                self._drop(viewer)
        if self._closing:
            if self._listener is not None:
                self._sel.unregister(self._listener)
                self._listener.close()
                self._listener = None
                self._unlink()
            if now >= self._close_deadline or not any(v.has_pending() for v in self._viewers.values()):
                return True
        return False

    def _select_timeout(self) -> float | None:
        deadlines = [v.deadline for v in self._viewers.values() if v.state == _HANDSHAKE]
        if self._closing:
            return 0.02
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave the connection in the backlog for later
                log.warning("telemetry server cannot accept a viewer: %s", exc)
                return
            if len(self._viewers) >= self.max_viewers:
                log.warning("telemetry server: %d viewers already connected; refusing another", self.max_viewers)
                sock.close()
                continue
            sock.setblocking(False)
            viewer = _Viewer(self, self._next_id, sock, time.monotonic() + self.handshake_s)
            self._next_id += 1
            self._viewers[viewer.id] = viewer
            self._set_mask(viewer, selectors.EVENT_READ)
            log.info("%s connected", viewer)

    def _read(self, viewer: _Viewer) -> None:
        try:
            data = viewer.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.info("%s: connection error (%s); disconnecting it", viewer, exc)
            self._drop(viewer)
            return
        if not data:  # half-closed or gone: sending tells which
            viewer.read_closed = True
            if viewer.state == _HANDSHAKE:
                if viewer.inbuf:
                    log.warning("%s closed its side in the middle of its request (%d bytes); ignoring it",
                                viewer, len(viewer.inbuf))
                self._attach(viewer, 0)
            self._update_mask(viewer)
            return
        if viewer.state != _HANDSHAKE:
            if viewer.ignored_bytes == 0:
                log.warning("%s sent data after its request; ignoring it", viewer)
            viewer.ignored_bytes += len(data)
            return
        viewer.inbuf += data
        newline = viewer.inbuf.find(b"\n")
        if newline < 0:
            if len(viewer.inbuf) > REQUEST_MAX:
                log.warning("%s sent a request longer than %d bytes (no newline yet); ignoring it", viewer, REQUEST_MAX)
                viewer.ignored_bytes = len(viewer.inbuf)
                self._attach(viewer, 0)
            return
        line = bytes(viewer.inbuf[:newline]).strip()
        if len(viewer.inbuf) > newline + 1:
            viewer.ignored_bytes = len(viewer.inbuf) - newline - 1
            log.warning("%s sent data after its request; ignoring it", viewer)
        since = 0
        if len(line) > REQUEST_MAX:
            log.warning("%s sent a request longer than %d bytes; ignoring it", viewer, REQUEST_MAX)
        elif line:
            parsed = _parse_request(line)
            if parsed is None:
                log.warning('%s sent a malformed request %r (expected {"since_seq": N}); ignoring it',
                            viewer, line[:80])
            else:
                since = parsed
        self._attach(viewer, since)

    def _attach(self, viewer: _Viewer, since: int) -> None:
        """Subscribe the viewer at a known seq S: the file holds everything up to S, the queue
        gets everything after it. The hello header is known now (if hello <= S) or comes live."""
        viewer.inbuf = bytearray()
        viewer.since = since
        viewer.state = _WAITING
        snapshot = self.emitter.subscribe(viewer.offer)
        viewer.snapshot = snapshot
        hello_seq = self.emitter.hello_seq
        if hello_seq is not None and hello_seq <= snapshot:
            with viewer.lock:
                if viewer.header is None:
                    viewer.header = (hello_seq, self.emitter.hello_line or "")
        log.info("%s streams from seq %d (file up to %d, then live)", viewer, since + 1, snapshot)
        self._maybe_ready(viewer)

    def _maybe_ready(self, viewer: _Viewer) -> None:
        """Start sending once the hello header is known — or when there will be none (the run
        ended before its hello, or the server is closing)."""
        with viewer.lock:
            ready = viewer.header is not None or viewer.end_queued
        if not (ready or self._closing):
            return
        viewer.state = _STREAMING
        viewer.send_header = viewer.header is not None
        if viewer.snapshot > viewer.since:
            try:
                viewer.replay = _Replay(self.events_path, viewer.since, viewer.snapshot,
                                        viewer.header[0] if viewer.header else None)
            except OSError as exc:
                log.warning("%s: cannot replay %s (%s); sending live events only", viewer, self.events_path, exc)

    def _fill(self, viewer: _Viewer) -> bytes:
        if viewer.send_header:
            viewer.send_header = False
            assert viewer.header is not None
            return (viewer.header[1] + "\n").encode("utf-8")
        while viewer.replay is not None:
            data, saw_end = viewer.replay.read(CHUNK)
            if viewer.replay.done:
                viewer.replay = None
            if data:
                viewer.end_in_out = saw_end
                return data
        data, saw_end = viewer.take(CHUNK)
        viewer.end_in_out = saw_end
        return data

    def _pump(self, viewer: _Viewer) -> None:
        """Send what the viewer's socket takes now, never waiting."""
        while True:
            if viewer.out_off >= len(viewer.out):
                if viewer.end_in_out:  # the `end` event went out: the stream is complete
                    log.info("%s got the end event; closing its connection", viewer)
                    self._drop(viewer)
                    return
                viewer.out, viewer.out_off = self._fill(viewer), 0
                if not viewer.out:
                    break
            try:
                sent = viewer.sock.send(memoryview(viewer.out)[viewer.out_off:], _SEND_FLAGS)
            except (BlockingIOError, InterruptedError):
                viewer.blocked = True
                break
            except OSError as exc:
                level = logging.INFO if exc.errno in (errno.EPIPE, errno.ECONNRESET) else logging.WARNING
                log.log(level, "%s went away (%s)", viewer, exc.strerror or exc)
                self._drop(viewer)
                return
            viewer.out_off += sent
            viewer.sent_bytes += sent
        self._update_mask(viewer)

    def _update_mask(self, viewer: _Viewer) -> None:
        mask = (0 if viewer.read_closed else selectors.EVENT_READ) | (selectors.EVENT_WRITE if viewer.blocked else 0)
        self._set_mask(viewer, mask)

    def _set_mask(self, viewer: _Viewer, mask: int) -> None:
        assert self._sel is not None
        if mask == viewer.mask:
            return
        if viewer.mask == 0:
            self._sel.register(viewer.sock, mask, viewer)
        elif mask == 0:
            self._sel.unregister(viewer.sock)
        else:
            self._sel.modify(viewer.sock, mask, viewer)
        viewer.mask = mask

    def _drop(self, viewer: _Viewer) -> None:
        if self._viewers.pop(viewer.id, None) is None:
            return
        self.emitter.unsubscribe(viewer.offer)
        if viewer.mask and self._sel is not None:
            try:
                self._sel.unregister(viewer.sock)
            except (KeyError, ValueError):
                pass
            viewer.mask = 0
        if viewer.replay is not None:
            viewer.replay.close()
            viewer.replay = None
        if viewer.ignored_bytes:
            log.info("%s: ignored %d bytes it sent", viewer, viewer.ignored_bytes)
        if viewer.dropped:
            log.info("%s: %d events were dropped for it (too slow)", viewer, viewer.dropped)
        viewer.sock.close()

    def _unlink(self) -> None:
        if self.path is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove %s: %s", self.path, exc)

    def _shutdown(self) -> None:
        for viewer in list(self._viewers.values()):
            if viewer.has_pending():
                log.info("%s did not take everything before the server closed", viewer)
            self._drop(viewer)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._unlink()
        if self._sel is not None:
            self._sel.close()
        fds = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1  # before closing: a late _wake must not hit a reused fd
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def start_server(run_dir: str | Path, emitter: Emitter) -> TelemetryServer | None:
    """A started server for a run, or None (with the reason logged) when no socket can be made:
    the run goes on without live viewers and `events.jsonl` stays the record."""
    try:
        return TelemetryServer(emitter, run_dir).start()
    except OSError as exc:
        log.warning("no live telemetry socket (%s); viewers can still replay %s", exc, emitter.path)
        return None
