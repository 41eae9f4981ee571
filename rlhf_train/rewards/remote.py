"""Remote reward model client: OpenRLHF's HTTP protocol, spread over one or more URLs.

Protocol (one request per batch of samples)::

    POST <url>  {"query": [prompt + response, ...], "prompts": [prompt, ...], "labels": [label, ...]}
    200         {"rewards": [float, ...]}            one finite number per query, in order

How a rollout of N samples is scored:

* split into batches of ``[reward].batch_size`` samples (0 = one batch), sent ``[reward].max_concurrency``
  at a time (a thread pool over ``requests`` sessions);
* each batch starts at the next URL in round-robin order, skipping URLs marked down (the last
  attempt there failed to connect or timed out; the mark lasts ``DOWN_FOR_S``, and a success clears it);
* attempt ``k = 0 .. retries`` goes to URL ``start + k`` (mod the URL count): a failed attempt fails
  over to the next URL. Before attempt ``k ≥ 1`` the client waits
  ``min(backoff_max_s, backoff_s · 2^(k−1)) · (1 − jitter · u)``, ``u ~ U[0, 1)``;
* retried: connection errors, timeouts (``timeout_s`` for connecting and for the answer), HTTP 5xx
  and 429. Not retried (the same request would fail the same way): other HTTP statuses and answers
  that break the protocol (not JSON, no ``rewards`` list, wrong length, a non-number, NaN/inf).

So a batch whose server never answers fails after at most
``timeout_s · (retries + 1) + Σ_{k<retries} min(backoff_max_s, backoff_s · 2^k)`` seconds.

Every failed attempt is a telemetry ``log`` event (warning: retrying; error: giving up) and is
counted: :meth:`RemoteReward.take_stats` returns ``reward/remote_retries`` (attempts after a
failure), ``reward/remote_failures`` (failed attempts) and ``reward/remote_s`` (seconds spent
scoring) since its last call.
A batch that cannot be scored raises :class:`RemoteRewardError` naming the URLs and what came back.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from rlhf_train.errors import RunError

DOWN_FOR_S = 30.0
"""Seconds a URL that failed to connect or timed out is left out of the round-robin start."""
BODY_EXCERPT = 200
"""Characters of an unusable answer quoted in an error."""

Emit = Callable[..., object]


class RemoteRewardError(RunError):
    """The remote reward could not be obtained; the message names the URL(s) and what came back."""


class _Retryable(Exception):
    """One attempt failed in a way another attempt may fix."""


@dataclass(frozen=True)
class RetryPolicy:
    """Timeout, retries and backoff of one batch (see the module docstring for the schedule)."""

    timeout_s: float
    retries: int
    backoff_s: float
    backoff_max_s: float
    jitter: float

    def delay(self, attempt: int, u: float) -> float:
        """Wait before attempt ``attempt ≥ 1``: ``min(max, base · 2^(attempt−1)) · (1 − jitter · u)``."""
        return min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)) * (1.0 - self.jitter * u)

    def worst_case_s(self) -> float:
        """Longest a batch can take when every attempt times out: ``timeout · (retries+1) + Σ delays``."""
        return self.timeout_s * (self.retries + 1) + sum(self.delay(k, 0.0) for k in range(1, self.retries + 1))


def parse_rewards(url: str, status: int, body: str, expected: int) -> list[float]:
    """The ``rewards`` of a 200 answer, checked: JSON object, a list of ``expected`` finite numbers.
    Anything else raises :class:`RemoteRewardError` naming ``url`` and quoting the answer."""
    quoted = repr(body[:BODY_EXCERPT] + ("…" if len(body) > BODY_EXCERPT else ""))
    try:
        payload = json.loads(body)
    except ValueError:
        raise RemoteRewardError(f"remote reward {url} answered HTTP {status} with a body that is not JSON: {quoted}; "
                                "the server must answer {\"rewards\": [...]}") from None
    if not isinstance(payload, dict) or "rewards" not in payload:
        raise RemoteRewardError(f"remote reward {url} answered without a \"rewards\" key: {quoted}; "
                                "the server must answer {\"rewards\": [...]}")
    rewards = payload["rewards"]
    if not isinstance(rewards, list):
        raise RemoteRewardError(f"remote reward {url}: \"rewards\" is a {type(rewards).__name__}, not a list: {quoted}")
    if len(rewards) != expected:
        raise RemoteRewardError(f"remote reward {url} returned {len(rewards)} rewards for {expected} queries "
                                f"(expected {expected}, got {len(rewards)}): {quoted}")
    out = []
    for index, value in enumerate(rewards):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RemoteRewardError(f"remote reward {url} returned a non-number at index {index}: {value!r}")
        if not math.isfinite(value):
            raise RemoteRewardError(f"remote reward {url} returned a non-finite reward at index {index}: {value!r}")
        out.append(float(value))
    return out


class RemoteReward:
    """``RemoteReward(urls, policy, batch_size, max_concurrency, emit)(prompts, responses, labels)``
    → one float per sample; a :data:`~rlhf_train.rewards.source.ScoreFn`. ``emit(type, **fields)``
    receives the ``log`` events (None: not reported). Call :meth:`close` when done."""

    def __init__(self, urls: Sequence[str], policy: RetryPolicy, *, batch_size: int = 0, max_concurrency: int = 4,
                 emit: Emit | None = None, seed: int = 0):
        if not urls:
            raise RemoteRewardError("remote reward needs at least one URL; set [reward].urls")
        self.urls = list(urls)
        self.policy = policy
        self.batch_size = batch_size
        self.emit = emit
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="remote-reward")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._next = 0
        self._down_until: dict[str, float] = {}
        self._retries = self._failures = 0
        self._seconds = 0.0

    def __call__(self, prompts: list[str], responses: list[str], labels: list[str]) -> list[float]:
        if not (len(prompts) == len(responses) == len(labels)):
            raise RemoteRewardError(f"remote reward needs one prompt, response and label per sample; got "
                                    f"{len(prompts)}, {len(responses)}, {len(labels)}")
        t0 = time.perf_counter()
        size = self.batch_size or max(1, len(prompts))
        spans = [(start, min(start + size, len(prompts))) for start in range(0, len(prompts), size)]
        futures = [self._pool.submit(self._score_batch, [p + r for p, r in zip(prompts[a:b], responses[a:b])],
                                     prompts[a:b], labels[a:b]) for a, b in spans]
        try:
            return [reward for future in futures for reward in future.result()]
        finally:
            with self._lock:
                self._seconds += time.perf_counter() - t0

    def take_stats(self) -> dict[str, float]:
        """Counters since the last call: retries, failed attempts and seconds spent scoring."""
        with self._lock:
            stats = {"reward/remote_retries": float(self._retries), "reward/remote_failures": float(self._failures),
                     "reward/remote_s": self._seconds}
            self._retries = self._failures = 0
            self._seconds = 0.0
        return stats

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _start_index(self) -> int:
        """Next URL in round-robin order that is not marked down (any URL when all are)."""
        with self._lock:
            now = time.monotonic()
            n = len(self.urls)
            for offset in range(n):
                index = (self._next + offset) % n
                if self._down_until.get(self.urls[index], 0.0) <= now:
                    self._next = index + 1
                    return index
            index, self._next = self._next % n, self._next + 1
            return index

    def _score_batch(self, queries: list[str], prompts: list[str], labels: list[str]) -> list[float]:
        start = self._start_index()
        payload = {"query": queries, "prompts": prompts, "labels": labels}
        failures: list[str] = []
        for attempt in range(self.policy.retries + 1):
            url = self.urls[(start + attempt) % len(self.urls)]
            if attempt:
                with self._lock:
                    self._retries += 1
                    u = self._rng.random()
                time.sleep(self.policy.delay(attempt, u))
            try:
                return self._post(url, payload, len(queries))
            except _Retryable as failure:
                failures.append(f"{url}: {failure}")
                with self._lock:
                    self._failures += 1
                if attempt < self.policy.retries:
                    self._log("warning", f"remote reward {url}: {failure}; retry {attempt + 1}/{self.policy.retries}"
                                         f" (next: {self.urls[(start + attempt + 1) % len(self.urls)]})",
                              url=url, attempt=attempt + 1)
        message = (f"remote reward failed after {self.policy.retries + 1} attempt(s) (timeout {self.policy.timeout_s:g} s"
                   f" each, [reward].retries = {self.policy.retries}): " + "; ".join(failures)
                   + ". Check that the reward server is up, or raise [reward].timeout_s / retries")
        self._log("error", message)
        raise RemoteRewardError(message)

    def _post(self, url: str, payload: dict, expected: int) -> list[float]:
        try:
            answer = self._session().post(url, json=payload, timeout=self.policy.timeout_s)
        except requests.Timeout:
            self._mark_down(url)
            raise _Retryable(f"no answer within {self.policy.timeout_s:g} s ([reward].timeout_s)") from None
        except requests.ConnectionError as error:
            self._mark_down(url)
            raise _Retryable(f"cannot connect ({_reason(error)})") from None
        except requests.RequestException as error:
            raise RemoteRewardError(f"remote reward {url}: {type(error).__name__}: {error}") from None
        with self._lock:
            self._down_until.pop(url, None)
        if answer.status_code >= 500 or answer.status_code == 429:
            raise _Retryable(f"HTTP {answer.status_code}: {_error_text(answer.text)}")
        if answer.status_code != 200:
            raise RemoteRewardError(f"remote reward {url} answered HTTP {answer.status_code}: "
                                    f"{_error_text(answer.text)}; check [reward].urls (the full path, e.g. "
                                    "http://host:port/get_reward)")
        return parse_rewards(url, answer.status_code, answer.text, expected)

    def _mark_down(self, url: str) -> None:
        with self._lock:
            self._down_until[url] = time.monotonic() + DOWN_FOR_S

    def _log(self, level: str, message: str, **fields) -> None:
        if self.emit is not None:
            self.emit("log", level=level, message=message, source="reward", **fields)


def _error_text(body: str) -> str:
    """What an error answer says: its JSON ``error`` field (as ``serve-rm`` sends), else the body; quoted, cut."""
    try:
        payload = json.loads(body)
        text = payload["error"] if isinstance(payload, dict) and isinstance(payload.get("error"), str) else body
    except ValueError:
        text = body
    return repr(text if len(text) <= BODY_EXCERPT else text[:BODY_EXCERPT] + "…")


def _reason(error: BaseException) -> str:
    """The OS reason of a connection error in one line (``[Errno 111] Connection refused``), else its
    first line."""
    text = str(error)
    found = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    return found.group(0).strip() if found else text.splitlines()[0][:BODY_EXCERPT] if text else type(error).__name__
