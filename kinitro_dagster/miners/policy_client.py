"""HTTP client for a miner's policy server (DESIGN §6): `/health`, `/reset`, `/act`.

One keep-alive connection per deployment, spoken over a plain socket. The per-step cost of this
client is paid half a million times per miner and env in a cycle, so it does no more than HTTP/1.1
needs: a pre-built request head, one `send`, a byte-level parse of the status line and the
two headers that matter (`Content-Length`, `Transfer-Encoding`), orjson for the observation and
stdlib `json` for the response (whose NaN and huge-integer handling the action checks rely on), kernel socket
timeouts instead of a poll() per call. TCP_NODELAY is set so a small request is not held back by
Nagle's algorithm waiting for the server's delayed ACK. Besides `http://host:port`, a policy may be served on a Unix
socket (`http+unix://<percent-encoded path>`, see `unix_socket_url`): measured here it saves
~10-20 µs of client and ~20-60 µs of server CPU per step over loopback TCP, and lets a sandboxed
policy run with no network at all.

Every failure raises `PolicyError` with a `kind` the rollout records (`ErrorKind`). After an error
the connection is dropped; the next request opens a fresh one.

A policy server is untrusted, and the parse is strict where leniency could be abused
(tests/miners/test_policy_client_fuzz.py holds the attacks): a status line is `HTTP/1.x` and three
digits; lines end in CRLF; a Content-Length is digits, and two that differ, or one with a
Transfer-Encoding, are an `http_error`; the only Transfer-Encoding is `chunked`, whose sizes are 1-16
hex digits, each chunk ending in CRLF; interim (1xx) responses before the final one are skipped.
A request never outlives its deadline: sending (to a server that stops reading) and receiving (from
one that trickles) both give up at it. A response is read up to `max_response_bytes` of body and
`_MAX_HEADER_BYTES` of heads and chunk framing, and no further; bytes after it mean the server is
out of step, and the connection is not reused.

Requests also come in halves (`send_*`, `poll`, `receive_*`) for a caller that keeps several
policies busy from one thread, as the rollout's workers do: `poll()` never waits, a response that
arrives in pieces is collected across polls, and one that arrived before its deadline counts even
when it is read later.
The wire vocabulary (observation keys, `PolicyAction`, `parse_action`, `ErrorKind`) lives in
`kinitro_dagster.protocol`.
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import orjson

from kinitro_dagster.protocol import ErrorKind, PolicyAction, PolicyError, parse_action
from kinitro_dagster.settings import executor_default

# Longest response head we read before calling the response too large (uvicorn sends ~150 bytes);
# interim (1xx) heads count towards it, and so does a chunked body's framing.
_MAX_HEADER_BYTES = 16 * 1024
_MAX_CHUNK_LINE = 1024  # a chunk-size line, extensions included
# Kernel timeouts (SO_RCVTIMEO, SO_SNDTIMEO) are set to this share of the time left, and kept while
# the time left is within _TIMEOUT_SPAN of them: never past the deadline, rarely re-set.
_TIMEOUT_MARGIN = 0.9
_TIMEOUT_SPAN = 1.25
_RECV_BYTES = 64 * 1024
_SNIPPET_CHARS = 200
UNIX_SCHEME = "http+unix"  # http+unix://%2Frun%2Fpolicy.sock: HTTP over a Unix socket
# After a connection error, how long a dying server process gets to show up as gone.
_CRASH_GRACE_S = 0.2


@dataclass(frozen=True)
class ClientSettings:
    """Timeouts and limits for one policy connection (DESIGN §6 defaults). Picklable for workers."""

    action_timeout: float = executor_default("action_timeout")
    reset_timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    max_response_bytes: int = 64 * 1024


class PolicyClient:
    """Talks to one policy server over one keep-alive HTTP/1.1 connection.

    `is_alive`, when given, tells whether the server process still exists; a connection error or
    timeout on a dead server is then reported as `crashed` instead.
    Not thread-safe: one client per episode loop.
    """

    def __init__(
        self,
        base_url: str,
        *,
        action_timeout: float = executor_default("action_timeout"),
        reset_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        max_response_bytes: int = 64 * 1024,
        is_alive: Callable[[], bool] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme == UNIX_SCHEME and parts.netloc:
            # HTTP over a Unix socket: the netloc is the percent-encoded socket path.
            self._address: tuple[str, int] | str = unquote(parts.netloc)
            host = "localhost"
        elif parts.scheme == "http" and parts.hostname:
            self._address = (parts.hostname, parts.port or 80)
            host = f"{parts.hostname}:{parts.port or 80}"
        else:
            raise ValueError(
                f"policy url {base_url!r} must look like http://host:port or {UNIX_SCHEME}://<quoted socket path> "
                "(https is not supported)"
            )
        self.base_url = base_url
        self.action_timeout = action_timeout
        self.reset_timeout_s = reset_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_response_bytes = max_response_bytes
        self._is_alive = is_alive
        prefix = parts.path.rstrip("/")
        self._act_head = _post_head(f"{prefix}/act", host)
        self._reset_head = _post_head(f"{prefix}/reset", host)
        self._health_request = (
            f"GET {prefix}/health HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode()
        )
        self._sock: socket.socket | None = None
        self._reused = False  # whether the open connection has already served a request
        self._recv_timeout = 0.0  # the SO_RCVTIMEO now set on the socket, seconds
        self._send_timeout = math.inf  # the SO_SNDTIMEO now set on the socket, seconds (none yet)
        self._pending: _Pending | None = None
        self._outcome: bytes | PolicyError | None = None  # the finished request's body or error, until received
        self._received: bytes | bytearray = b""  # bytes of the pending response read so far (a bytearray once any)
        self._chunks: _Chunks | None = None  # its chunked body decoded so far
        self._last_head: bytes | None = None  # the last head parsed, and its parse
        self._last_parse: tuple[int, int | None, bool, bool] = (0, None, False, False)

    @classmethod
    def from_settings(
        cls, base_url: str, settings: ClientSettings, *, is_alive: Callable[[], bool] | None = None
    ) -> PolicyClient:
        return cls(
            base_url,
            action_timeout=settings.action_timeout,
            reset_timeout_s=settings.reset_timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            max_response_bytes=settings.max_response_bytes,
            is_alive=is_alive,
        )

    # -- protocol -------------------------------------------------------------------------------

    def health(self, timeout_s: float | None = None) -> dict:
        body = self._exchange(self._health_request, "/health", timeout_s or self.reset_timeout_s)
        payload = self._decoded(body, "/health")
        if not isinstance(payload, dict):
            self.close()
            raise PolicyError(ErrorKind.INVALID_JSON, f"/health returned {type(payload).__name__}, not an object")
        return payload

    def reset(self, task_config: dict) -> str | None:
        """Start an episode. No seed is sent: seeds never reach the miner (DESIGN §4)."""
        self.send_reset(task_config)
        return self.receive_reset()

    def act(self, observation: dict | bytes) -> PolicyAction:
        """One step. `observation` is the JSON-ready dict, or its JSON encoding when pre-encoded."""
        self.send_act(observation)
        return self.receive_action()

    # Each request in halves, so that one thread can keep several policies busy: send, do other work
    # (step another miner's env) while `poll()` says the response is incomplete, then receive. The
    # halves raise the PolicyErrors the whole call would.

    def send_reset(self, task_config: dict) -> None:
        body = json.dumps({"task_config": task_config}).encode()
        self._send(self._reset_head(body), "/reset", self.reset_timeout_s)

    def receive_reset(self) -> str | None:
        payload = self._decoded(self._receive(), "/reset")
        episode_id = payload.get("episode_id") if isinstance(payload, dict) else None
        return episode_id if isinstance(episode_id, str) else None

    def send_act(self, observation: dict | bytes) -> None:
        obs_bytes = observation if isinstance(observation, bytes) else dump_observation(observation)
        self._send(self._act_head(b'{"obs":' + obs_bytes + b"}"), "/act", self.action_timeout)

    def receive_action(self) -> PolicyAction:
        response = self._receive()
        try:
            return parse_action(_decode_json(response, "/act"))
        except PolicyError:
            self.close()  # a policy that sent garbage starts its next episode on a clean connection
            raise

    def poll(self, *, block: bool = False) -> bool:
        """Read what has arrived for the pending request; True once its response is complete or the
        request has failed (`receive_*` then returns or raises at once), False while more is due
        before the deadline. `block`: wait for it instead, up to the deadline.

        A response that arrives in pieces is collected across calls, so a policy that sends half a
        response and stalls costs the caller nothing until its deadline.
        """
        pending = self._pending
        if self._outcome is not None:
            return True
        if pending is None:
            raise RuntimeError("no request is pending: send one first")
        try:
            try:
                body = self._response(pending, block)
            except _StaleConnection:
                # As in _send: the server closed the idle connection before our request reached it.
                self.close()
                self._pending = pending
                self._send_request(self._connection(pending.deadline), pending.request, pending.deadline)
                body = self._response(pending, block)
        except _NotYet:
            return False
        except (PolicyError, _StaleConnection, OSError) as error:
            self._outcome = self._failed(error, pending.what, pending.timeout_s)
        else:
            self._outcome = body
        self._pending = None
        return True

    @property
    def pending_socket(self) -> socket.socket | None:
        """The connection a sent request's response will arrive on (None when nothing is pending)."""
        return self._sock if self._pending is not None else None

    @property
    def pending_deadline(self) -> float | None:
        """`time.monotonic()` by which the pending response is due."""
        return self._pending.deadline if self._pending is not None else None

    def _decoded(self, body: bytes, what: str) -> object:
        try:
            return _decode_json(body, what)
        except PolicyError:
            self.close()
            raise

    def close(self) -> None:
        """Drop the connection (and any request still waiting for its response)."""
        self._pending = None
        self._outcome = None
        self._received, self._chunks = b"", None
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------------

    def _exchange(self, request: bytes, what: str, timeout_s: float) -> bytes:
        """Send one request and return the 2xx body; every failure is a PolicyError."""
        self._send(request, what, timeout_s)
        return self._receive()

    def _send(self, request: bytes, what: str, timeout_s: float) -> None:
        self._outcome, self._received, self._chunks = None, b"", None
        pending = self._pending = _Pending(request, what, time.monotonic() + timeout_s, timeout_s)
        try:
            try:
                self._send_request(self._connection(pending.deadline), request, pending.deadline)
            except (ConnectionResetError, BrokenPipeError) as error:
                if not self._reused:
                    raise PolicyError(
                        ErrorKind.CONNECTION_ERROR, f"{what}: server closed the connection ({error})"
                    ) from None
                # An idle keep-alive connection the server had already closed: the request never
                # reached it, so sending it once more on a fresh connection is safe.
                self.close()
                self._pending = pending
                self._send_request(self._connection(pending.deadline), request, pending.deadline)
        except (PolicyError, OSError) as error:
            raise self._failed(error, what, timeout_s) from None

    def _receive(self) -> bytes:
        """The pending request's 2xx body (waiting for it if `poll` has not seen it complete)."""
        self.poll(block=True)
        outcome, self._outcome = self._outcome, None
        if isinstance(outcome, PolicyError):
            raise outcome
        assert outcome is not None
        return outcome

    def _response(self, pending: _Pending, block: bool) -> bytes:
        sock = self._sock
        assert sock is not None
        reused, what = self._reused, pending.what
        try:
            status, body, keep_alive = self._read_response(sock, what, pending.deadline, block)
        except (ConnectionResetError, BrokenPipeError, _ClosedBeforeResponse) as error:
            if reused and not self._received:  # once a byte of the response came, the request was read
                raise _StaleConnection(str(error)) from None
            raise PolicyError(ErrorKind.CONNECTION_ERROR, f"{what}: server closed the connection ({error})") from None
        self._received, self._chunks = b"", None
        self._reused = True
        if not keep_alive:
            self.close()
        if not 200 <= status < 300:
            snippet = body[:_SNIPPET_CHARS].decode("utf-8", "replace")
            raise PolicyError(ErrorKind.HTTP_ERROR, f"{what} returned HTTP {status}: {snippet!r}")
        return body

    def _failed(self, error: Exception, what: str, timeout_s: float) -> PolicyError:
        """The PolicyError for a failed request (the connection is dropped)."""
        self.close()
        if isinstance(error, PolicyError):
            failure = error
        elif isinstance(error, TimeoutError | BlockingIOError):  # BlockingIOError: a kernel timeout expired
            failure = PolicyError(ErrorKind.TIMEOUT, f"{what} gave no complete response within {timeout_s:g} s")
        elif isinstance(error, _StaleConnection):
            failure = PolicyError(ErrorKind.CONNECTION_ERROR, f"{what}: {error}")
        else:
            failure = PolicyError(ErrorKind.CONNECTION_ERROR, f"{what} to {self.base_url}: {error}")
        return self._crash_or(failure)

    def _connection(self, deadline: float) -> socket.socket:
        if self._sock is None:
            timeout = min(self.connect_timeout_s, _remaining(deadline))
            try:
                sock = _connect(self._address, timeout)
            except TimeoutError:
                raise PolicyError(
                    ErrorKind.TIMEOUT, f"connecting to {self.base_url} took longer than {timeout:g} s"
                ) from None
            except OSError as error:
                raise PolicyError(ErrorKind.CONNECTION_ERROR, f"cannot connect to {self.base_url}: {error}") from None
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Blocking mode with kernel timeouts (SO_RCVTIMEO, SO_SNDTIMEO, set by _recv and
            # _send_request) rather than Python's socket timeouts, which poll() before every send and recv.
            sock.settimeout(None)
            self._sock = sock
            self._reused = False
            self._recv_timeout, self._send_timeout = 0.0, math.inf
        return self._sock

    def _send_request(self, sock: socket.socket, request: bytes, deadline: float) -> None:
        """`sock.sendall(request)`, given up at `deadline` (TimeoutError): a server that stops reading
        cannot hold the client past it. A request fits the socket buffer, and goes in one send."""
        if self._send_timeout > deadline - time.monotonic():
            self._bound_send(sock, deadline)
        try:
            sent = sock.send(request)
        except BlockingIOError:  # the kernel timeout expired with nothing sent
            sent = 0
        if sent < len(request):
            view = memoryview(request)[sent:]
            while view:
                self._bound_send(sock, deadline)
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    continue

    def _bound_send(self, sock: socket.socket, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if self._send_timeout > remaining:
            self._send_timeout = _TIMEOUT_MARGIN * remaining
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self._send_timeout))

    def _recv(self, sock: socket.socket, deadline: float, size: int) -> bytes:
        """One recv of up to `size` bytes that gives up at `deadline` (raises BlockingIOError then)."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # Past the deadline only what has already arrived counts: a caller interleaving several
                # policies may come back to this one a little late. Nothing there is a timeout.
                return _recv_arrived(sock, deadline, size)
            # The kernel timeout is a little short of the time left, and re-set only when it is off by
            # more than that, so that back-to-back /act calls set it once per connection, not per step.
            timeout = self._recv_timeout
            if not timeout <= remaining <= _TIMEOUT_SPAN * timeout:
                timeout = self._recv_timeout = _TIMEOUT_MARGIN * remaining
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
            try:
                return sock.recv(size)
            except BlockingIOError:
                continue  # the kernel timeout expired short of the deadline: wait out the rest

    def _read_response(self, sock: socket.socket, what: str, deadline: float, block: bool) -> tuple[int, bytes, bool]:
        """Parse the response from what has arrived so far, reading more as needed. Without `block`,
        raises _NotYet when nothing more has arrived; the next call parses again from the start of
        everything received (kept in `_received`, a chunked body's progress in `_chunks`), so no
        byte is lost between calls and none is decoded twice."""
        buf = self._received
        wire_limit = self.max_response_bytes + _MAX_HEADER_BYTES
        if not buf:
            # The usual case first: the whole response in one read (uvicorn sends head and body together).
            size = min(wire_limit, _RECV_BYTES)
            data = self._recv(sock, deadline, size) if block else _recv_arrived(sock, deadline, size)
            end = data.find(b"\r\n\r\n")
            if 0 <= end <= _MAX_HEADER_BYTES:
                # A server's heads differ only in their Date, once a second: the last one's parse is kept.
                head = data[:end]
                if head == self._last_head:
                    status, length, chunked, keep_alive = self._last_parse
                else:
                    status, length, chunked, keep_alive = self._last_parse = _parse_head(head, what)
                    self._last_head = head
                if (length is not None and len(data) == end + 4 + length <= end + 4 + self.max_response_bytes
                        and status >= 200 and status not in (204, 304)):  # fmt: skip
                    return status, data[end + 4 :], keep_alive
            if not data:
                raise _ClosedBeforeResponse("connection closed before any response")
            buf = self._received = bytearray(data)  # anything else: parsed from the start, kept between polls

        def recv() -> bool:
            """Read more of the response into `buf`; False when the server closed the connection."""
            allowance = wire_limit - len(buf)
            if allowance <= 0:
                raise PolicyError(ErrorKind.RESPONSE_TOO_LARGE,
                                  f"{what} response exceeds {wire_limit} B with its head and framing")  # fmt: skip
            size = min(allowance, _RECV_BYTES)
            chunk = self._recv(sock, deadline, size) if block else _recv_arrived(sock, deadline, size)
            buf.extend(chunk)
            return bool(chunk)

        start = 0  # where the head being read begins: interim (1xx) responses come before the final one
        while True:
            while (end := buf.find(b"\r\n\r\n", start)) < 0:
                if len(buf) > _MAX_HEADER_BYTES:
                    raise _head_too_large(what)
                if len(buf) >= start + 5 and not buf.startswith(b"HTTP/", start):
                    raise _not_http(buf[start:], what)
                if not recv():
                    if buf:
                        raise PolicyError(ErrorKind.CONNECTION_ERROR, f"{what}: connection closed mid-response")
                    raise _ClosedBeforeResponse("connection closed before any response")
            if end > _MAX_HEADER_BYTES:
                raise _head_too_large(what)
            status, length, chunked, keep_alive = _parse_head(buf[start:end], what)
            start = end + 4
            if not 100 <= status < 200 or status == 101:  # 101 would switch protocols: not an answer
                break
        limit = self.max_response_bytes
        if status in (204, 304):  # no body, whatever the head says
            end = start
        elif chunked:
            if self._chunks is None:
                self._chunks = _Chunks(start)
            end = _read_chunked(recv, buf, self._chunks, limit, what)
            return status, bytes(self._chunks.body), keep_alive and end == len(buf)
        elif length is None:  # no framing: the body runs to the end of the connection
            while recv():
                if len(buf) - start > limit:
                    raise PolicyError(ErrorKind.RESPONSE_TOO_LARGE, f"{what} response exceeds {limit} B")
            return status, bytes(buf[start:]), False
        elif length > limit:
            raise PolicyError(ErrorKind.RESPONSE_TOO_LARGE, f"{what} response of {length} B exceeds {limit} B")
        else:
            end = start + length
            while len(buf) < end:
                _recv_more(recv, what)
        # Bytes after the response answer no request of ours: the server is out of step.
        return status, bytes(buf[start:end]), keep_alive and end == len(buf)

    def _crash_or(self, error: PolicyError) -> PolicyError:
        """A connection error or timeout from a server process that is gone is a crash."""
        if self._is_alive is None or error.kind not in (ErrorKind.CONNECTION_ERROR, ErrorKind.TIMEOUT):
            return error
        # The kernel resets the socket while the process is still exiting: give it a moment.
        give_up = time.monotonic() + (_CRASH_GRACE_S if error.kind is ErrorKind.CONNECTION_ERROR else 0.0)
        while True:
            if not self._is_alive():
                return PolicyError(ErrorKind.CRASHED, f"policy server process is gone ({error.message})")
            if time.monotonic() >= give_up:
                return error
            time.sleep(0.01)


@dataclass(frozen=True)
class _Pending:
    """A request sent and not yet answered."""

    request: bytes
    what: str
    deadline: float  # time.monotonic()
    timeout_s: float


class _NotYet(Exception):
    """The pending response is incomplete and nothing more has arrived yet (non-blocking reads)."""


def _recv_arrived(sock: socket.socket, deadline: float, size: int = _RECV_BYTES) -> bytes:
    """What has arrived, without waiting: _NotYet if nothing has and the deadline is still ahead."""
    try:
        return sock.recv(size, socket.MSG_DONTWAIT)
    except BlockingIOError:
        if time.monotonic() < deadline:
            raise _NotYet from None
        raise  # a timeout


class _StaleConnection(Exception):
    """A reused keep-alive connection failed before any response byte arrived."""


class _ClosedBeforeResponse(Exception):
    pass


def _post_head(path: str, host: str) -> Callable[[bytes], bytes]:
    prefix = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: "
    ).encode()

    def request(body: bytes) -> bytes:
        return b"%s%d\r\n\r\n%s" % (prefix, len(body), body)

    return request


_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def dump_observation(observation: dict) -> bytes:
    """Compact JSON of an observation; NaN or infinity anywhere is our bug (`evaluator_error`).

    orjson first (~5x the stdlib's speed on an observation, paid every step). It writes NaN and
    infinity as null, and observations hold no null of their own, so output with a null in it
    (or anything orjson refuses) is encoded again by the strict stdlib encoder, which names the
    problem; a base64 image that merely contains the letters "null" encodes the same both ways.
    """
    try:
        encoded = orjson.dumps(observation)
    except TypeError:
        encoded = b"null"
    if b"null" not in encoded:
        return encoded
    try:
        return _encoder.encode(observation).encode()
    except (TypeError, ValueError) as error:
        # Our own observation failed to encode: an evaluator bug, not the miner's.
        raise PolicyError(ErrorKind.EVALUATOR_ERROR, f"observation is not JSON-ready: {error}") from None


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining


def _connect(address: tuple[str, int] | str, timeout: float) -> socket.socket:
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def unix_socket_url(path: str | Path) -> str:
    """The base URL of a policy served on a Unix socket (`uvicorn --uds path`)."""
    return f"{UNIX_SCHEME}://{quote(str(path), safe='')}"


def _timeval(seconds: float) -> bytes:
    """A `struct timeval` for SO_RCVTIMEO/SO_SNDTIMEO; never zero, which would mean 'no timeout'."""
    micros = max(1, round(seconds * 1e6))
    return struct.pack("@ll", micros // 1_000_000, micros % 1_000_000)


def _parse_head(head: bytes | bytearray, what: str) -> tuple[int, int | None, bool, bool]:
    """Status, Content-Length, chunked?, keep-alive? from a response head."""
    lines = head.split(b"\r\n")
    try:
        version, code = lines[0].split(b" ", 2)[:2]
    except ValueError:  # no space
        raise _not_http(head, what) from None
    if version not in _VERSIONS or len(code) != 3 or not code.isdigit():
        raise _not_http(head, what)
    if len(head.translate(None, b"\r\n")) != len(head) - 2 * len(lines) + 2:
        # A bare CR or LF: where the head's lines end is then a matter of interpretation (a reason
        # phrase could hide a whole other head), and ours must not be the lenient one.
        raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: bare CR or LF in the response head")
    length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit():  # ASCII digits only: no sign, no "_", no "0x"
                raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: bad Content-Length {bytes(value[:40])!r}")
            given = int(value) if len(value) <= 18 else 10**18  # beyond any limit; int() of 5,000 digits is slow
            if length is not None and given != length:
                raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: conflicting Content-Lengths {length} and {given}")
            length = given
        elif name == b"transfer-encoding":
            # Chunked alone: a policy's JSON is not compressed, and a body in a coding we cannot decode
            # (or "chunked" twice) is no answer.
            if chunked or value.strip().lower() != b"chunked":
                raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: unsupported Transfer-Encoding {bytes(value[:40])!r}")
            chunked = True
        elif name == b"connection":
            token = value.strip().lower()
            keep_alive = token != b"close" and (keep_alive or token == b"keep-alive")
    if chunked and length is not None:  # RFC 9112 §6.1: a sign of smuggling, "ought to be handled as an error"
        raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: both Content-Length and Transfer-Encoding")
    return int(code), length, chunked, keep_alive


_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")
# chunk-size [BWS] [; chunk-ext]: 1-16 hex digits (no sign, no "0x"), more than any limit
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")


def _head_too_large(what: str) -> PolicyError:
    return PolicyError(ErrorKind.RESPONSE_TOO_LARGE, f"{what} response head exceeds {_MAX_HEADER_BYTES} B")


def _not_http(head: bytes | bytearray, what: str) -> PolicyError:
    snippet = bytes(head[:_SNIPPET_CHARS]).decode("latin-1")
    return PolicyError(ErrorKind.HTTP_ERROR, f"{what}: not an HTTP/1.x response: {snippet!r}")


@dataclass
class _Chunks:
    """A chunked body decoded so far: the chunks before `pos` (in the received bytes) are in `body`."""

    pos: int
    body: bytearray = field(default_factory=bytearray)


def _read_chunked(recv: Callable[[], bool], buf: bytearray, chunks: _Chunks, limit: int, what: str) -> int:
    """Decode the chunked body in `buf` on from `chunks.pos` into `chunks.body`, reading more as needed;
    returns where the body (its trailers included) ends in `buf`."""
    body = chunks.body
    while True:
        pos = chunks.pos
        while (eol := buf.find(b"\r\n", pos, pos + _MAX_CHUNK_LINE)) < 0:
            if len(buf) - pos >= _MAX_CHUNK_LINE:
                raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: chunk-size line longer than {_MAX_CHUNK_LINE} B")
            _recv_more(recv, what)
        size_line = _CHUNK_SIZE.fullmatch(buf, pos, eol)
        if size_line is None:
            raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: malformed chunk size {bytes(buf[pos:eol][:40])!r}")
        size = int(size_line[1], 16)
        if size == 0:
            break
        if len(body) + size > limit:
            raise PolicyError(ErrorKind.RESPONSE_TOO_LARGE, f"{what} response exceeds {limit} B")
        data_end = eol + 2 + size
        while len(buf) < data_end + 2:
            _recv_more(recv, what)
        if buf[data_end : data_end + 2] != b"\r\n":
            raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: a chunk of {size} B is not followed by CRLF")
        body += buf[eol + 2 : data_end]
        chunks.pos = data_end + 2
    # The last chunk; then trailer fields (ASGI servers send none; read past them) up to an empty line.
    pos = eol + 2
    while True:
        if buf.startswith(b"\r\n", pos):
            return pos + 2
        if (end := buf.find(b"\r\n\r\n", pos)) >= 0:
            for line in bytes(buf[pos:end]).split(b"\r\n"):
                name, colon, _ = line.partition(b":")
                if not colon or not name or name != name.strip() or b"\r" in line or b"\n" in line:
                    raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: malformed trailer {line[:40]!r}")
            return end + 4
        _recv_more(recv, what)


def _recv_more(recv: Callable[[], bool], what: str) -> None:
    if not recv():
        raise PolicyError(ErrorKind.CONNECTION_ERROR, f"{what}: connection closed mid-body")


def _decode_json(body: bytes, what: str) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:  # RecursionError: nested deeper than the parser goes
        snippet = body[:_SNIPPET_CHARS].decode("utf-8", "replace")
        raise PolicyError(ErrorKind.INVALID_JSON, f"{what} body is not JSON ({error}): {snippet!r}") from None
