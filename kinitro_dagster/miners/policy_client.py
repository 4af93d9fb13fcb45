"""HTTP client for a miner's policy server (DESIGN §6): `/health`, `/reset`, `/act`.

One keep-alive connection per deployment, spoken over a plain socket. The per-step cost of this
client is paid half a million times per miner and env in a cycle, so it does no more than HTTP/1.1
needs: a pre-built request head, one `sendall`, a byte-level parse of the status line and the
two headers that matter (`Content-Length`, `Transfer-Encoding`), orjson for the observation and
stdlib `json` for the response (whose NaN and huge-integer handling the action checks rely on), kernel socket
timeouts instead of a poll() per call. TCP_NODELAY is set so a small request is not held back by
Nagle's algorithm waiting for the server's delayed ACK. A response is read up to
`max_response_bytes` and no further. Besides `http://host:port`, a policy may be served on a Unix
socket (`http+unix://<percent-encoded path>`, see `unix_socket_url`): measured here it saves
~10-20 µs of client and ~20-60 µs of server CPU per step over loopback TCP, and lets a sandboxed
policy run with no network at all.

Every failure raises `PolicyError` with a `kind` the rollout records (`ErrorKind`). After an error
the connection is dropped; the next request opens a fresh one.

Requests also come in halves (`send_*`, `poll`, `receive_*`) for a caller that keeps several
policies busy from one thread, as the rollout's workers do: `poll()` never waits, a response that
arrives in pieces is collected across polls, and one that arrived before its deadline counts even
when it is read later.
The wire vocabulary (observation keys, `PolicyAction`, `parse_action`, `ErrorKind`) lives in
`kinitro_dagster.protocol`.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import orjson

from kinitro_dagster.protocol import ErrorKind, PolicyAction, PolicyError, parse_action
from kinitro_dagster.settings import executor_default

# Longest response head we read before calling the response too large (uvicorn sends ~150 bytes).
_MAX_HEADER_BYTES = 16 * 1024
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
        self._pending: _Pending | None = None
        self._outcome: bytes | PolicyError | None = None  # the finished request's body or error, until received
        self._received = b""  # bytes of the pending response read so far

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
                self._connection(pending.deadline).sendall(pending.request)
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
        self._received = b""
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
        self._outcome, self._received = None, b""
        pending = self._pending = _Pending(request, what, time.monotonic() + timeout_s, timeout_s)
        try:
            try:
                self._connection(pending.deadline).sendall(request)
            except (ConnectionResetError, BrokenPipeError) as error:
                if not self._reused:
                    raise PolicyError(
                        ErrorKind.CONNECTION_ERROR, f"{what}: server closed the connection ({error})"
                    ) from None
                # An idle keep-alive connection the server had already closed: the request never
                # reached it, so sending it once more on a fresh connection is safe.
                self.close()
                self._pending = pending
                self._connection(pending.deadline).sendall(request)
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
            if reused:
                raise _StaleConnection(str(error)) from None
            raise PolicyError(ErrorKind.CONNECTION_ERROR, f"{what}: server closed the connection ({error})") from None
        self._received = b""
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
            # Blocking mode with kernel timeouts (SO_RCVTIMEO, SO_SNDTIMEO) rather than Python's
            # socket timeouts, which poll() before every send and recv. A send only blocks if the
            # server stops reading with its buffers full, so one bound serves every request.
            sock.settimeout(None)
            send_timeout = max(self.action_timeout, self.reset_timeout_s)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(send_timeout))
            self._sock = sock
            self._reused = False
            self._recv_timeout = 0.0
        return self._sock

    def _recv(self, sock: socket.socket, deadline: float) -> bytes:
        """One recv that gives up at `deadline` (raises BlockingIOError when the kernel timeout expires)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            # Past the deadline only what has already arrived counts: a caller interleaving several
            # policies may come back to this one a little late. Nothing there is a timeout.
            return _recv_arrived(sock, deadline)
        # Re-set the kernel timeout only when it is off the remaining time by over 10 %, so that
        # back-to-back /act calls set it once per connection instead of once per step.
        if not 0.9 * self._recv_timeout <= remaining <= 1.1 * self._recv_timeout:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(remaining))
            self._recv_timeout = remaining
        return sock.recv(_RECV_BYTES)

    def _read_response(self, sock: socket.socket, what: str, deadline: float, block: bool) -> tuple[int, bytes, bool]:
        """Parse the response from what has arrived so far, reading more as needed. Without `block`,
        raises _NotYet when nothing more has arrived; the next call parses again from the start of
        everything received (kept in `_received`), so no byte is lost between calls."""

        def recv() -> bytes:
            chunk = self._recv(sock, deadline) if block else _recv_arrived(sock, deadline)
            self._received += chunk
            return chunk

        buf = self._received
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > _MAX_HEADER_BYTES:
                raise PolicyError(ErrorKind.RESPONSE_TOO_LARGE, f"{what} response head exceeds {_MAX_HEADER_BYTES} B")
            chunk = recv()
            if not chunk:
                if buf:
                    raise PolicyError(ErrorKind.CONNECTION_ERROR, f"{what}: connection closed mid-response")
                raise _ClosedBeforeResponse("connection closed before any response")
            buf += chunk
        status, length, chunked, keep_alive = _parse_head(buf[:end], what)
        rest = buf[end + 4 :]
        limit = self.max_response_bytes
        if chunked:
            return status, _read_chunked(recv, rest, limit, what), keep_alive
        if length is None:  # no framing: the body runs to the end of the connection
            return status, _read_to_close(recv, rest, limit, what), False
        if length > limit:
            raise PolicyError(ErrorKind.RESPONSE_TOO_LARGE, f"{what} response of {length} B exceeds {limit} B")
        while len(rest) < length:
            rest += _recv_more(recv, what)
        return status, rest[:length], keep_alive

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


def _recv_arrived(sock: socket.socket, deadline: float) -> bytes:
    """What has arrived, without waiting: _NotYet if nothing has and the deadline is still ahead."""
    try:
        return sock.recv(_RECV_BYTES, socket.MSG_DONTWAIT)
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


def _parse_head(head: bytes, what: str) -> tuple[int, int | None, bool, bool]:
    """Status, Content-Length, chunked?, keep-alive? from a response head."""
    lines = head.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    try:
        version, status = status_line[0], int(status_line[1])
    except (IndexError, ValueError):
        snippet = head[:_SNIPPET_CHARS].decode("latin-1")
        raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: not an HTTP response: {snippet!r}") from None
    length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: bad Content-Length {value!r}") from None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep_alive = token != b"close" and (keep_alive or token == b"keep-alive")
    return status, length, chunked, keep_alive


def _read_chunked(recv: Callable[[], bytes], data: bytes, limit: int, what: str) -> bytes:
    body = bytearray()
    while True:
        while (eol := data.find(b"\r\n")) < 0:
            if len(data) > 1024:
                raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: malformed chunked body")
            data += _recv_more(recv, what)
        try:
            size = int(data[:eol].split(b";", 1)[0], 16)
        except ValueError:
            raise PolicyError(ErrorKind.HTTP_ERROR, f"{what}: malformed chunk size") from None
        if len(body) + size > limit:
            raise PolicyError(ErrorKind.RESPONSE_TOO_LARGE, f"{what} response exceeds {limit} B")
        data = data[eol + 2 :]
        while len(data) < size + 2:
            data += _recv_more(recv, what)
        if size == 0:
            return bytes(body)  # trailers are not used by ASGI servers; the final CRLF is consumed
        body += data[:size]
        data = data[size + 2 :]


def _read_to_close(recv: Callable[[], bytes], data: bytes, limit: int, what: str) -> bytes:
    body = bytearray(data)
    while chunk := recv():
        body += chunk
        if len(body) > limit:
            raise PolicyError(ErrorKind.RESPONSE_TOO_LARGE, f"{what} response exceeds {limit} B")
    return bytes(body)


def _recv_more(recv: Callable[[], bytes], what: str) -> bytes:
    chunk = recv()
    if not chunk:
        raise PolicyError(ErrorKind.CONNECTION_ERROR, f"{what}: connection closed mid-body")
    return chunk


def _decode_json(body: bytes, what: str) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        snippet = body[:_SNIPPET_CHARS].decode("utf-8", "replace")
        raise PolicyError(ErrorKind.INVALID_JSON, f"{what} body is not JSON ({error}): {snippet!r}") from None
