"""`rlhf-train serve-rm`: a reward server speaking OpenRLHF's remote RM protocol (see `rewards.remote`).

    POST <path> {"query": [...], "prompts": [...], "labels": [...]}  →  200 {"rewards": [...]}

`query[i]` is prompt + response; the response scored is `query[i]` with `prompts[i]` cut from its
front (the whole query when it does not start with the prompt, or when `prompts` is absent).
`labels` may be absent (then ""). Bad requests get 400 `{"error": ...}`, a failing scorer 500
`{"error": ...}`, another path 404. A threaded `http.server` from the standard library, on
loopback (127.0.0.1) unless told otherwise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_PATH = "/get_reward"

Scorer = Callable[[list[str], list[str], list[str]], object]


class BadRequest(ValueError):
    """A request that breaks the protocol; the message says how."""


def parse_request(body: bytes) -> tuple[list[str], list[str], list[str]]:
    """(prompts, responses, labels) of a request body, or :class:`BadRequest`."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise BadRequest("the body is not JSON; send {\"query\": [...], \"prompts\": [...], \"labels\": [...]}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), list):
        raise BadRequest("the body needs \"query\": a list of prompt + response strings")
    queries = payload["query"]
    prompts = payload.get("prompts", [""] * len(queries))
    labels = payload.get("labels", [""] * len(queries))
    for key, values in (("query", queries), ("prompts", prompts), ("labels", labels)):
        if not isinstance(values, list) or len(values) != len(queries):
            raise BadRequest(f"\"{key}\" must be a list as long as \"query\" ({len(queries)})")
        bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
        if bad is not None:
            raise BadRequest(f"\"{key}\"[{bad}] is a {type(values[bad]).__name__}, not a string")
    responses = [q[len(p):] if p and q.startswith(p) else q for q, p in zip(queries, prompts)]
    return prompts, responses, labels


def _handler(scorer: Scorer, path: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's session expects

        def do_POST(self) -> None:  # noqa: N802 -- http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != path:
                return self._answer(404, {"error": f"no such path {self.path!r}; POST to {path}"})
            try:
                prompts, responses, labels = parse_request(body)
            except BadRequest as error:
                return self._answer(400, {"error": str(error)})
            try:
                rewards = [float(x) for x in _as_list(scorer(prompts, responses, labels))]
            except Exception as error:  # noqa: BLE001 -- the client gets the reason, the server goes on
                return self._answer(500, {"error": f"{type(error).__name__}: {error}"})
            self._answer(200, {"rewards": rewards})

        def _answer(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 -- http.server's signature
            """Quiet: one line per request would drown the terminal at RL step rates."""

    return Handler


def _as_list(result: object) -> list:
    return result.tolist() if hasattr(result, "tolist") else list(result)


class RewardServer:
    """``RewardServer(scorer, host, port, path)``: serving from :meth:`start` (a background thread)
    or :meth:`serve_forever` until :meth:`close`. Port 0 picks a free port; :attr:`url` is the address."""

    def __init__(self, scorer: Scorer, host: str = "127.0.0.1", port: int = 0, path: str = DEFAULT_PATH):
        if not path.startswith("/"):
            raise ValueError(f"path {path!r} must start with /")
        self.path = path
        self.httpd = ThreadingHTTPServer((host, port), _handler(scorer, path))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def start(self) -> RewardServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), name="reward-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        """Stop serving (the :meth:`start` thread) and release the port."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()


def make_scorer(*, task: str = "", function: str = "", model: str = "", dtype: str = "float32") -> tuple[str, Scorer]:
    """(name, scorer) for exactly one of a built-in `task`, a reward `function` (`file.py:name`) or a
    reward `model` directory; errors are :class:`~rlhf_train.errors.RunError` or the loader's own."""
    from rlhf_train.errors import RunError

    chosen = [(kind, value) for kind, value in (("task", task), ("function", function), ("model", model)) if value]
    if len(chosen) != 1:
        raise RunError("serve-rm needs exactly one of --task NAME, --function FILE.py:NAME or --model DIR")
    kind, value = chosen[0]
    if kind == "task":
        from rlhf_train.rewards.builtin import get_task

        try:
            return f"builtin:{task}", get_task(task).score
        except KeyError as exc:
            raise RunError(f"--task {task}: {exc.args[0]}") from None
    if kind == "function":
        from rlhf_train.rewards.function import load_reward_function

        return function, load_reward_function(function)
    from rlhf_train.rewards.source import model_scorer

    return model, model_scorer(model, dtype=dtype)


def serve(scorer: Scorer, name: str, *, host: str, port: int, path: str) -> None:
    """Serve until SIGTERM or Ctrl-C, printing the URL first (one line, flushed: scripts read it)."""
    import signal

    def stop(*_) -> None:
        raise KeyboardInterrupt

    server = RewardServer(scorer, host, port, path)
    previous = signal.signal(signal.SIGTERM, stop)
    print(f"serving reward {name} on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
