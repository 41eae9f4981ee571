"""The remote reward client against real HTTP servers on 127.0.0.1: a plain `http.server` written
here (scripted failures) and ours (`rewards.server`, what `rlhf-train serve-rm` runs)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rlhf_train.config.schema import RewardConfig
from rlhf_train.rewards.remote import RemoteReward, RemoteRewardError, RetryPolicy
from rlhf_train.rewards.server import RewardServer, make_scorer

FAST = RetryPolicy(timeout_s=2.0, retries=3, backoff_s=0.01, backoff_max_s=0.05, jitter=0.5)


class PlainServer:
    """A `http.server` answering each POST with the next scripted behaviour (then `default`):
    "ok" (reward = len(query)), "500", "hang", "not-json", "short", "nan", "no-key". Records what came."""

    def __init__(self, script: list[str] | None = None, default: str = "ok"):
        self.script, self.default = list(script or []), default
        self.requests: list[dict] = []
        self.arrivals: list[float] = []
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    owner.requests.append(body)
                    owner.arrivals.append(time.time())
                    action = owner.script.pop(0) if owner.script else owner.default
                if action == "hang":
                    owner.release.wait(10)
                    return
                rewards = [float(len(q)) for q in body["query"]]
                status, text = 200, json.dumps({"rewards": rewards})
                if action == "500":
                    status, text = 500, "internal trouble"
                elif action == "not-json":
                    text = "<html>oops</html>"
                elif action == "short":
                    text = json.dumps({"rewards": rewards[:-1]})
                elif action == "nan":
                    text = json.dumps({"rewards": [math.nan] * len(rewards)})
                elif action == "no-key":
                    text = json.dumps({"scores": rewards})
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/score"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made = []

    def make(*args, **kwargs) -> PlainServer:
        made.append(PlainServer(*args, **kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close()


def dead_url() -> str:
    """A loopback URL nobody listens on (a port just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/score"


def client(urls, policy=FAST, **kwargs) -> tuple[RemoteReward, list[dict]]:
    events: list[dict] = []
    c = RemoteReward(urls, policy, emit=lambda type_, **fields: events.append({"type": type_, **fields}), **kwargs)
    return c, events


PROMPTS, RESPONSES, LABELS = ["a", "bb", "c", "dd"], [" x", " yy", "", " zzz"], ["1", "2", "3", "4"]
EXPECTED = [float(len(p + r)) for p, r in zip(PROMPTS, RESPONSES)]


def test_protocol_body_and_url_string_from_the_preset(servers):
    server = servers()
    urls = RewardConfig(kind="remote", urls=server.url).urls  # one string → a list of one
    assert urls == [server.url]
    c, events = client(urls)
    assert c(PROMPTS, RESPONSES, LABELS) == EXPECTED
    assert server.requests == [{"query": [p + r for p, r in zip(PROMPTS, RESPONSES)], "prompts": PROMPTS,
                                "labels": LABELS}]
    assert c.take_stats() | {"reward/remote_s": 0.0} == {"reward/remote_retries": 0.0, "reward/remote_failures": 0.0,
                                                         "reward/remote_s": 0.0}
    assert events == []


def test_url_list_round_robin_over_batches(servers):
    a, b = servers(), servers()
    c, _ = client(RewardConfig(kind="remote", urls=[a.url, b.url]).urls, batch_size=1, max_concurrency=1)
    assert c(PROMPTS, RESPONSES, LABELS) == EXPECTED  # order kept across batches
    assert len(a.requests) == len(b.requests) == 2
    assert [r["prompts"] for r in a.requests] == [["a"], ["c"]]


def test_one_of_two_urls_down_everything_served_by_the_other(servers):
    live = servers()
    c, events = client([dead_url(), live.url], batch_size=1, max_concurrency=2)
    for _ in range(3):
        assert c(PROMPTS, RESPONSES, LABELS) == EXPECTED
    assert len(live.requests) == 12  # every batch, after at most one failed attempt at the dead URL
    stats = c.take_stats()
    assert 1 <= stats["reward/remote_failures"] == stats["reward/remote_retries"] <= 2  # then it is skipped
    assert all(e["level"] == "warning" and "cannot connect" in e["message"] for e in events)


def test_500_twice_then_success_is_retried_and_counted(servers):
    server = servers(["500", "500"])
    c, events = client([server.url])
    assert c(PROMPTS, RESPONSES, LABELS) == EXPECTED
    assert len(server.requests) == 3
    stats = c.take_stats()
    assert stats["reward/remote_retries"] == 2 and stats["reward/remote_failures"] == 2
    assert [e["level"] for e in events] == ["warning", "warning"]
    assert "HTTP 500: 'internal trouble'; retry 1/3" in events[0]["message"]
    assert c.take_stats()["reward/remote_retries"] == 0  # counters restart


def test_retries_exhausted_is_a_clear_error(servers):
    server = servers(default="500")
    c, events = client([server.url], RetryPolicy(timeout_s=2.0, retries=2, backoff_s=0.0, backoff_max_s=0.0, jitter=0))
    with pytest.raises(RemoteRewardError) as caught:
        c(PROMPTS, RESPONSES, LABELS)
    assert len(server.requests) == 3
    assert "remote reward failed after 3 attempt(s)" in str(caught.value)
    assert f"{server.url}: HTTP 500" in str(caught.value)
    assert events[-1]["level"] == "error"


def test_a_hanging_server_fails_after_timeout_times_attempts_plus_backoff(servers):
    server = servers(default="hang")
    policy = RetryPolicy(timeout_s=0.3, retries=2, backoff_s=0.1, backoff_max_s=1.0, jitter=0.0)
    assert policy.worst_case_s() == pytest.approx(0.3 * 3 + 0.1 + 0.2)
    c, _ = client([server.url], policy)
    started = time.monotonic()
    with pytest.raises(RemoteRewardError, match=r"no answer within 0.3 s \(\[reward\].timeout_s\)"):
        c(PROMPTS, RESPONSES, LABELS)
    elapsed = time.monotonic() - started
    assert policy.worst_case_s() - 0.05 <= elapsed <= policy.worst_case_s() + 0.5
    assert len(server.requests) == 3


@pytest.mark.parametrize("action, message", [
    ("not-json", "with a body that is not JSON: '<html>oops</html>'"),
    ("short", "returned 3 rewards for 4 queries (expected 4, got 3)"),
    ("nan", "returned a non-finite reward at index 0: nan"),
    ("no-key", "answered without a \"rewards\" key"),
])
def test_bad_answers_are_clear_errors_naming_the_url(servers, action, message):
    server = servers(default=action)
    c, _ = client([server.url])
    with pytest.raises(RemoteRewardError) as caught:
        c(PROMPTS, RESPONSES, LABELS)
    assert f"remote reward {server.url}" in str(caught.value)
    assert message in str(caught.value)
    assert len(server.requests) == 1  # the same request would break the same way: not retried


def test_wrong_path_is_not_retried_and_says_so():
    server = RewardServer(make_scorer(task="arith")[1]).start()
    try:
        c, _ = client([server.url.replace("/get_reward", "/nope")])
        with pytest.raises(RemoteRewardError, match=r"answered HTTP 404: .*no such path '/nope'; POST to /get_reward"):
            c(["1 + 2 ="], [" 3"], ["3"])
    finally:
        server.close()


def test_backoff_schedule_doubles_caps_and_jitters():
    policy = RetryPolicy(timeout_s=1.0, retries=5, backoff_s=0.5, backoff_max_s=3.0, jitter=0.5)
    assert [policy.delay(k, 0.0) for k in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(2, 0.5) == 1.0 * (1 - 0.25)
    assert policy.worst_case_s() == 6 * 1.0 + 0.5 + 1.0 + 2.0 + 3.0 + 3.0  # 6 attempts, 5 waits


# ---- our server (serve-rm) -------------------------------------------------------------------


@pytest.fixture
def arith_server():
    server = RewardServer(make_scorer(task="arith")[1]).start()
    yield server
    server.close()


def test_our_server_scores_the_builtin_task_through_the_client(arith_server):
    assert arith_server.url.startswith("http://127.0.0.1:") and arith_server.url.endswith("/get_reward")
    c, _ = client([arith_server.url])
    prompts = ["3 + 5 =", "1 + 1 =", "2 + 2 ="]
    assert c(prompts, [" 8", " 2 2", " 5"], ["8", "2", "4"]) == [1.0, 0.5, 0.0]


def test_our_server_rejects_bad_requests(arith_server):
    import requests

    answer = requests.post(arith_server.url, data=b"{not json", timeout=5)
    assert answer.status_code == 400 and "not JSON" in answer.json()["error"]
    answer = requests.post(arith_server.url, json={"query": ["a"], "prompts": ["a", "b"]}, timeout=5)
    assert answer.status_code == 400 and answer.json()["error"] == "\"prompts\" must be a list as long as \"query\" (1)"
    answer = requests.post(arith_server.url, json={"query": ["1 + 1 = 2"]}, timeout=5)  # prompts/labels optional
    assert answer.status_code == 200 and answer.json() == {"rewards": [0.0]}  # no label: nothing matches


def test_our_server_reports_a_failing_function_as_500(tmp_path):
    path = tmp_path / "reward.py"
    path.write_text("def score(prompts, responses, labels):\n    raise RuntimeError('no GPU here')\n")
    server = RewardServer(make_scorer(function=f"{path}:score")[1]).start()
    try:
        c, _ = client([server.url], RetryPolicy(timeout_s=2.0, retries=1, backoff_s=0.0, backoff_max_s=0.0, jitter=0))
        with pytest.raises(RemoteRewardError, match=r"HTTP 500: .*RewardFunctionError: reward function 'score' in "):
            c(["p"], ["r"], ["l"])
    finally:
        server.close()


def test_make_scorer_needs_exactly_one_source():
    from rlhf_train.errors import RunError

    with pytest.raises(RunError, match="exactly one of --task"):
        make_scorer()
    with pytest.raises(RunError, match="--task nope: unknown built-in task 'nope'; known tasks: arith, copy"):
        make_scorer(task="nope")
