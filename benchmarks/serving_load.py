"""The serving benchmark's load generators, standard library only (so the client processes start in ~0.1 s):
keep-alive HTTP clients spread over worker processes, connections that trickle a request head, and a poller of a
process tree's resident memory.

Clients are threads (one keep-alive `http.client` connection each) spread over spawned processes, so that the
clients' own interpreter lock is not what limits a run (http.client costs ~0.3 ms of client CPU per request).
Every process connects first and waits at a barrier, so the measured window starts with all connections open.
Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import multiprocessing
import os
import random
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

HEADERS = {"Content-Type": "application/json"}


@dataclass
class Outcome:
    """What a load run got: latency (ms) of each 200 answer, statuses of every attempt, the measured window."""

    latencies_ms: list[float] = field(default_factory=list)  # per answered request, its own attempt
    end_to_end_ms: list[float] = field(default_factory=list)  # per answered request, first attempt to answer
    statuses: Counter = field(default_factory=Counter)  # every attempt: HTTP status, or "reset" / "error"
    busy: Counter = field(default_factory=Counter)  # 503s by the limit named: "rows", "bytes", "other"
    rows: int = 0  # rows answered with 200
    requests: int = 0  # requests begun (each answered, or given up at the deadline after 503s)
    client_cpu_s: float = 0.0  # CPU seconds of the client processes, all their threads
    began: float = float("inf")  # time.monotonic() (one clock for every process on the machine)
    ended: float = float("-inf")
    samples: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    clients: int = 0
    processes: int = 0

    @property
    def seconds(self) -> float:
        return max(self.ended - self.began, 1e-9)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    def percentile(self, q: float, values: Sequence[float] | None = None) -> float:
        values = sorted(self.latencies_ms if values is None else values)
        if not values:
            return float("nan")
        rank = (len(values) - 1) * q / 100  # numpy's default (linear) percentile
        low, high = int(rank), min(int(rank) + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (rank - low)

    p50_ms = property(lambda self: self.percentile(50))
    p99_ms = property(lambda self: self.percentile(99))

    def merge(self, other: Outcome) -> Outcome:
        self.latencies_ms += other.latencies_ms
        self.end_to_end_ms += other.end_to_end_ms
        self.statuses.update(other.statuses)
        self.busy.update(other.busy)
        self.rows += other.rows
        self.requests += other.requests
        self.client_cpu_s += other.client_cpu_s
        self.began, self.ended = min(self.began, other.began), max(self.ended, other.ended)
        self.samples += other.samples[:max(0, 50 - len(self.samples))]
        self.errors += other.errors[:max(0, 5 - len(self.errors))]
        return self

    def add(self, other: Outcome) -> Outcome:
        """Two rounds of the same level as one: latencies pooled, windows summed."""
        seconds = self.seconds + other.seconds
        merged = Outcome(clients=self.clients, processes=self.processes).merge(self).merge(other)
        merged.began, merged.ended = 0.0, seconds
        return merged


@dataclass(frozen=True)
class LoadSpec:
    port: int
    bodies: Sequence[bytes]  # sent in turn (client n starts at its own offset)
    clients: int
    requests: int  # per client, at most
    seconds: float  # per client, at most: no new attempt after this (an attempt in flight finishes)
    path: str = "/invocations"
    rows_per_body: int = 1
    offset: int = 0
    retry_busy: bool = False  # on 503: sleep Retry-After, then send the same request again
    max_retry_sleep: float = 1.0  # cap on one Retry-After sleep
    sample: int = 0  # keep the first `sample` answers of client 0
    timeout: float = 120.0  # socket timeout of one attempt


def run_load(spec: LoadSpec, processes: int = 1, meter: Any = None) -> Outcome:
    """`spec.clients` clients over `processes` spawned processes (in this process when 1); one Outcome. `meter`
    (a context manager, e.g. CpuMeter) is entered once every client is connected and left when all are done."""
    meter = meter or contextlib.nullcontext()
    processes = max(1, min(processes, spec.clients))
    if processes == 1:
        with meter:
            return _clients(spec, range(spec.clients), None)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes + 1), context.Queue()
    groups = [range(spec.clients)[p::processes] for p in range(processes)]
    workers = [context.Process(target=_worker, args=(spec, group, barrier, results), daemon=True) for group in groups]
    for worker in workers:
        worker.start()
    outcome = Outcome(clients=spec.clients, processes=processes)
    try:
        barrier.wait(timeout=60)
        with meter:
            limit = time.monotonic() + spec.seconds + spec.timeout + 30
            for _ in workers:
                outcome.merge(results.get(timeout=max(1.0, limit - time.monotonic())))
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)
    return outcome


def _worker(spec: LoadSpec, group: range, barrier: object, results: object) -> None:
    results.put(_clients(spec, group, barrier))  # type: ignore[attr-defined]


def _clients(spec: LoadSpec, group: range, barrier: object | None) -> Outcome:
    """This process's share of the clients: connect all, wait for every process, go."""
    cpu = time.process_time()
    connections = [http.client.HTTPConnection("127.0.0.1", spec.port, timeout=spec.timeout) for _ in group]
    for connection in connections:
        connection.connect()
    parts = [Outcome() for _ in group]
    ready = threading.Barrier(len(group) + 1)
    threads = [threading.Thread(target=_client, args=(spec, number, connections[i], parts[i], ready), daemon=True)
               for i, number in enumerate(group)]
    for thread in threads:
        thread.start()
    if barrier is not None:
        barrier.wait(timeout=60)  # type: ignore[attr-defined]
    ready.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=spec.seconds + spec.timeout + 10)
    outcome = Outcome(clients=len(group), processes=1)
    for part in parts:
        outcome.merge(part)
    outcome.client_cpu_s = time.process_time() - cpu
    for connection in connections:
        connection.close()
    return outcome


def _client(spec: LoadSpec, number: int, connection: http.client.HTTPConnection, out: Outcome,
            ready: threading.Barrier) -> None:
    ready.wait(timeout=60)
    start = time.monotonic()
    deadline = start + spec.seconds
    out.began = start
    bodies = spec.bodies
    for i in range(spec.requests):
        if time.monotonic() > deadline:
            break
        body = bodies[(spec.offset + number * spec.requests + i) % len(bodies)]
        out.requests += 1
        first = time.perf_counter()
        while True:  # attempts of one request: more than one only on 503 (retry_busy) or a dropped connection
            began = time.perf_counter()
            try:
                connection.request("POST", spec.path, body, HEADERS)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:  # reset, closed, timed out: a new connection
                out.statuses["reset" if isinstance(exc, ConnectionError) else "error"] += 1
                if len(out.errors) < 5:
                    out.errors.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", spec.port, timeout=spec.timeout)
                if not spec.retry_busy or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
                continue
            done = time.perf_counter()
            out.statuses[response.status] += 1
            if response.status == 200:
                out.latencies_ms.append((done - began) * 1000)
                out.end_to_end_ms.append((done - first) * 1000)
                out.rows += spec.rows_per_body
                if number == 0 and len(out.samples) < spec.sample:
                    out.samples.append(data)
                break
            if response.status == 503:
                out.busy["rows" if b"rows being answered" in data else "bytes" if b"bytes of requests" in data
                         else "other"] += 1
                if spec.retry_busy and time.monotonic() < deadline:  # not before Retry-After (+ up to 10% jitter)
                    retry_after = response.getheader("Retry-After") or "1"
                    wait = float(retry_after) if retry_after.isdigit() else 1.0
                    time.sleep(min(wait, spec.max_retry_sleep) * random.uniform(1.0, 1.1))
                    continue
            if len(out.errors) < 5:
                out.errors.append(f"{response.status}: {data[:200]!r}")
            break
    out.ended = time.monotonic()


# ---------------------------------------------------------------------------------------------------------------
# Slow connections


@dataclass
class SlowStats:
    wanted: int
    opened: int = 0  # connections opened in all (the first `wanted` and every reopening)
    cut_by_deadline: int = 0  # closed by the server at least `deadline` after connecting, head unfinished
    closed_early: int = 0  # closed by the server sooner (or reset)
    answered: int = 0  # the server sent something (a 4xx) before closing
    connect_failures: int = 0
    min_open: int = 0  # fewest open at once while measuring (after `ready`, before `stop`)
    cut_ages_s: list[float] = field(default_factory=list)


def slow_connections(port: int, count: int, deadline: float, max_seconds: float, ready: object, stop: object,
                     results: object) -> None:
    """`count` connections each sending a request head one byte a second (a head far longer than the run, so it is
    never whole); one the server closes is reopened at once. Runs in its own process until `stop` is set (or
    `max_seconds`), then puts a SlowStats on `results`; sets `ready` once `count` are open."""
    head = (b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: "
            + b"x" * 4096)
    stats = SlowStats(count)
    selector = selectors.DefaultSelector()
    open_: dict[socket.socket, list] = {}  # socket -> [opened at, next byte due, bytes sent]
    began = time.monotonic()

    def connect() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(2)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
        except OSError:
            stats.connect_failures += 1
            sock.close()
            return
        now = time.monotonic()
        stats.opened += 1
        open_[sock] = [now, now + random.uniform(0, 1), 0]
        selector.register(sock, selectors.EVENT_READ)

    def close(sock: socket.socket, answered: bool) -> None:
        """A connection the server closed (or reset): counted by its age, and replaced at once."""
        opened_at = open_.pop(sock)[0]
        selector.unregister(sock)
        sock.close()
        age = time.monotonic() - opened_at
        stats.answered += answered
        if age >= deadline * 0.95:
            stats.cut_by_deadline += 1
            stats.cut_ages_s.append(age)
        else:
            stats.closed_early += 1
        connect()

    while len(open_) < count and time.monotonic() - began < 30:
        connect()
    stats.min_open = len(open_)
    ready.set()  # type: ignore[attr-defined]
    while not stop.is_set() and time.monotonic() - began < max_seconds:  # type: ignore[attr-defined]
        for key, _ in selector.select(timeout=0.005):
            sock = key.fileobj
            try:
                data = sock.recv(4096)  # type: ignore[union-attr]
            except OSError:
                data = b""
            close(sock, bool(data))  # type: ignore[arg-type]
        now = time.monotonic()
        for sock, state in list(open_.items()):
            if state[1] <= now:
                try:
                    sock.send(head[state[2]:state[2] + 1])
                    state[2] += 1
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    close(sock, False)
                    continue
                state[1] += 1.0
        for _ in range(count - len(open_)):  # connects that failed: try again, a bounded number per pass
            connect()
        stats.min_open = min(stats.min_open, len(open_))
    for sock in list(open_):
        sock.close()
    results.put(stats)  # type: ignore[attr-defined]


class SlowConnections:
    """`with SlowConnections(port, 300, 10.0) as slow:` ... `slow.stats` after the block."""

    def __init__(self, port: int, count: int, deadline: float, max_seconds: float = 120.0) -> None:
        context = multiprocessing.get_context("spawn")
        self.ready, self.stop, self.results = context.Event(), context.Event(), context.Queue()
        self.process = context.Process(target=slow_connections, daemon=True,
                                       args=(port, count, deadline, max_seconds, self.ready, self.stop, self.results))
        self.max_seconds = max_seconds
        self.stats: SlowStats | None = None

    def __enter__(self) -> SlowConnections:
        self.process.start()
        if not self.ready.wait(timeout=60):
            self.stop.set()
            raise RuntimeError("the slow connections were not opened within 60 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        try:
            self.stats = self.results.get(timeout=self.max_seconds + 30)
        finally:
            self.process.join(timeout=10)
            if self.process.is_alive():
                self.process.terminate()


# ---------------------------------------------------------------------------------------------------------------
# Memory


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux: /proc/<pid>/task/<tid>/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as file:
                    todo += [int(child) for child in file.read().split()]
        except OSError:
            continue
    return found


def status_kb(pid: int, name: str) -> int:
    """A `/proc/<pid>/status` field in kB (VmRSS, VmHWM), 0 when the process is gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as file:
        return next((int(line.split()[1]) for line in file if line.startswith(name + ":")), 0)
    return 0


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (writing 5 to clear_refs, Linux 4.0+); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


class RssMonitor:
    """Polls the summed VmRSS of a process tree every `interval` seconds in a thread; `peak_mb` is the highest seen,
    `hwm_mb` the kernel's own peak (VmHWM) of the tree's processes, summed, since `reset_peak`."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.pids = tree(pid)
        self.reset = all([reset_peak(p) for p in self.pids])
        self.before_mb = self.rss_mb()
        self.peak_mb = self.before_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def rss_mb(self) -> float:
        return sum(status_kb(p, "VmRSS") for p in self.pids) / 1024

    def hwm_mb(self) -> float:
        return sum(status_kb(p, "VmHWM") for p in self.pids) / 1024

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self.rss_mb())

    def __enter__(self) -> RssMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class CpuMeter:
    """CPU time of a process tree, and of the whole machine, over one or more `with` blocks: `cores` is the tree's
    CPU seconds per wall second (1.0: one core busy all along), `machine_cores` the same for the whole machine."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu_s = self.machine_s = self.wall_s = 0.0

    cores = property(lambda self: self.cpu_s / self.wall_s if self.wall_s else 0.0)
    machine_cores = property(lambda self: self.machine_s / self.wall_s if self.wall_s else 0.0)

    @staticmethod
    def _tree_ticks(pids: list[int]) -> int:
        total = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
        return total

    @staticmethod
    def _machine_ticks() -> int:
        with open("/proc/stat") as file:
            values = [int(v) for v in file.readline().split()[1:]]
        return sum(values) - values[3] - (values[4] if len(values) > 4 else 0)  # all but idle and iowait

    def __enter__(self) -> CpuMeter:
        self._pids = tree(self.pid)
        self._began = time.monotonic()
        self._tree, self._machine = self._tree_ticks(self._pids), self._machine_ticks()
        return self

    def __exit__(self, *exc: object) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        self.wall_s += time.monotonic() - self._began
        self.cpu_s += (self._tree_ticks(self._pids) - self._tree) / tick
        self.machine_s += (self._machine_ticks() - self._machine) / tick
