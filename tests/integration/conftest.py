"""Shared pytest fixtures: the mailroom binary, free loopback ports and the
real peers the tests talk to (dnsmasq here; SMTP peers in peers.py).

Every server is started by the test, on loopback, and stopped by PID at
teardown.  Run with Debian's /usr/bin/python3 -m pytest.
"""
import json
import os
import pathlib
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a long scenario (a minute or more); the "
        "sanitizer pass of scripts/test.sh leaves it out (-m 'not slow')")


def mailroom_path():
    """The binary under test: $MAILROOM_BIN, else build/mailroom."""
    path = os.environ.get("MAILROOM_BIN") or str(ROOT / "build" / "mailroom")
    if not os.access(path, os.X_OK):
        pytest.exit(f"mailroom binary not found at {path}: build it first "
                    "(meson setup build && ninja -C build)", returncode=2)
    return path


@pytest.fixture(scope="session")
def mailroom():
    return mailroom_path()


def server_factory(cls, tmp_path):
    """The body of a server fixture (`yield from server_factory(...)`):
    yields start(**kw) -> cls(tmp_path, **kw), started; at teardown every
    one is terminated first, then stopped, and the first error raised."""
    started = []

    def start(**kw):
        srv = cls(tmp_path, **kw)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.terminate()
    errors = []
    for srv in started:
        try:
            srv.stop()
        except Exception as e:  # stop the others, then report
            errors.append(e)
    if errors:
        raise errors[0]


def free_port(host="127.0.0.1", kind=socket.SOCK_STREAM):
    """A port that was free on host a moment ago (TCP by default)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_udp_tcp_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on host a moment ago."""
    for _ in range(50):
        port = free_port(host, socket.SOCK_DGRAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free for both UDP and TCP")


def wait_port(host, port, timeout=10.0, kind=socket.SOCK_STREAM):
    """Block until something listens on host:port (TCP) or give up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kind == socket.SOCK_STREAM:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        else:
            return
    raise TimeoutError(f"nothing listening on {host}:{port}")


class Dnsmasq:
    """A dnsmasq serving MX/A/AAAA records on a loopback UDP/TCP port.

    mx: iterable of (domain, mxhost, preference)
    hosts: iterable of (name, address) -> A or AAAA records
    null_mx: iterable of domains that get a null MX (RFC 7505)
    log_queries: log every query to .log_path (see .queries())
    Names under .test that are not listed answer NXDOMAIN.
    """

    def __init__(self, tmp_path, mx=(), hosts=(), null_mx=(), local="test",
                 log_queries=False):
        self.log_path = None
        records = ["--log-queries"] if log_queries else []
        for domain, host, pref in mx:
            records.append(f"--mx-host={domain},{host},{pref}")
        for domain in null_mx:
            records.append(f"--mx-host={domain},.,0")
        for name, addr in hosts:
            records.append(f"--host-record={name},{addr}")
        # dnsmasq binds the port for UDP and TCP: pick one free for both,
        # and try another when someone takes it between our check and
        # dnsmasq's bind (dnsmasq then exits at once).
        for attempt in range(5):
            self.port = free_udp_tcp_port("127.0.0.1")
            self.address = f"127.0.0.1:{self.port}"
            args = ["dnsmasq", "--no-daemon", f"--port={self.port}",
                    "--listen-address=127.0.0.1", "--bind-interfaces",
                    "--no-resolv", "--no-hosts", f"--local=/{local}/",
                    "--log-facility=-", "--pid-file=",
                    f"--conf-file={os.devnull}"] + records
            self.log_path = tmp_path / f"dnsmasq-{self.port}.log"
            self.log = open(self.log_path, "w")
            self.proc = subprocess.Popen(args, stdout=self.log,
                                         stderr=subprocess.STDOUT)
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError("dnsmasq did not start; see its logs in "
                           f"{tmp_path}")

    def _wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port),
                                              timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def queries(self, qtype, name):
        """How many qtype queries for name dnsmasq has logged."""
        self.log.flush()
        text = self.log_path.read_text()
        return text.count(f"query[{qtype}] {name} from")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def dnsmasq(tmp_path):
    """Factory: dnsmasq(mx=[...], hosts=[...], null_mx=[...]) -> Dnsmasq."""
    started = []

    def start(**kw):
        d = Dnsmasq(tmp_path, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


# ---------------------------------------------------------------- SMTP peers
# The classes live in peers.py (imported lazily: peers imports this module).

@pytest.fixture
def smtp_sink(tmp_path):
    """Factory: smtp_sink(host="127.0.0.2", port=None, dump=True, args=())
    -> peers.SmtpSink (Postfix smtp-sink, stopped by PID at teardown)."""
    import peers
    started = []

    def start(**kw):
        s = peers.SmtpSink(tmp_path, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        try:
            s.stop()
        finally:
            s.cleanup()


@pytest.fixture
def aio_peer():
    """Factory: aio_peer(host="127.0.0.2", port=0, **behaviour)
    -> peers.AioPeer, started; stopped at teardown.  See peers.AioPeer."""
    import peers
    started = []

    def start(**kw):
        p = peers.AioPeer(**kw)
        started.append(p)
        return p.start()

    yield start
    errors = []
    for p in started:
        try:
            p.stop()
        except Exception as e:  # stop the others, then report
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def scripted_peer():
    """Factory: scripted_peer(host="127.0.0.2", port=0, **script)
    -> peers.ScriptedPeer, started; stopped at teardown."""
    import peers
    started = []

    def start(**kw):
        p = peers.ScriptedPeer(**kw)
        started.append(p)
        return p.start()

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def tls_cert(tmp_path):
    """Factory: tls_cert(cn="mx.test", dns_names=(), ips=())
    -> (certfile, keyfile), self-signed, made with the openssl CLI."""
    import peers

    def make(cn="mx.test", dns_names=(), ips=()):
        return peers.make_cert(tmp_path / "certs", cn, dns_names, ips)

    return make


@pytest.fixture
def send(mailroom, tmp_path):
    """send(**kw) -> peers.SendResult: runs `mailroom send` in a fresh
    directory under tmp_path (run1, run2, ...).  See peers.run_send."""
    import peers
    runs = []

    def run(**kw):
        runs.append(1)
        workdir = kw.pop("workdir", tmp_path / f"run{len(runs)}")
        return peers.run_send(mailroom, workdir, **kw)

    return run


# ------------------------------------------------- crash and fault tests

@pytest.fixture
def counting_sink():
    """Factory: counting_sink(host="127.0.0.2", port=0, delay=0.0)
    -> peers.CountingSink, started; stopped at teardown."""
    import peers
    started = []

    def start(**kw):
        s = peers.CountingSink(**kw)
        started.append(s)
        return s.start()

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def rcpt_scripted_peer():
    """Factory: rcpt_scripted_peer(host="127.0.0.2", port=0,
    rcpt_replies={addr: reply}, **script) -> peers.RcptScriptedPeer,
    started; stopped at teardown."""
    import peers
    started = []

    def start(**kw):
        p = peers.RcptScriptedPeer(**kw)
        started.append(p)
        return p.start()

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def mailroom_bg(mailroom, tmp_path):
    """Factory: mailroom_bg(args, name="run1", workdir=tmp_path)
    -> peers.MailroomRun, `mailroom ARGS...` started in the background
    (stdout/stderr in workdir/NAME.out, NAME.err).  Any still running at
    teardown is killed by PID."""
    import peers
    started = []

    def start(args, name=None, workdir=None):
        name = name or f"run{len(started) + 1}"
        run = peers.MailroomRun([mailroom] + list(args),
                                workdir or tmp_path, name)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.poll() is None:
            run.kill()


@pytest.fixture
def tmpfs(tmp_path):
    """Factory: tmpfs(size="512k", name="tmpfs") -> path of a tmpfs of that
    size mounted on tmp_path/NAME (needs root: skips otherwise).  Unmounted
    at teardown, even when the test failed (lazily if still busy)."""
    mounted = []

    def mount(size="512k", name="tmpfs"):
        path = tmp_path / name
        path.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o",
                            f"size={size},mode=0755", "tmpfs", str(path)],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        r = subprocess.run(["umount", str(path)], capture_output=True,
                           timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True,
                           timeout=30)


RECEIVER = pathlib.Path(__file__).with_name("receiver.py")


class Receiver:
    """One receiver.py process (started and stopped by PID)."""

    def __init__(self, tmp_path, mode, host="127.0.0.2", port=None, **kw):
        self.mode = mode
        self.host = host
        self.port = port or free_port(host)
        self.stats_path = tmp_path / f"{mode}-{self.port}.json"
        argv = [sys.executable if sys.executable.startswith("/usr/bin")
                else "/usr/bin/python3", str(RECEIVER), mode,
                "--listen", f"{host}:{self.port}",
                "--stats", str(self.stats_path)]
        for k, v in kw.items():
            if v is True:
                argv += [f"--{k.replace('_', '-')}"]
            else:
                argv += [f"--{k.replace('_', '-')}", str(v)]
        # stderr to a file: a pipe nobody reads would block the
        # receiver once it filled.
        self.err_path = tmp_path / f"{mode}-{self.port}.err"
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                         stderr=err, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else ""
        assert line.startswith("ready"), (line, self.err_path.read_text())
        self.stats = None

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def stop(self):
        if self.stats is None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
            self.stats = json.loads(self.stats_path.read_text())
        return self.stats

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def receivers(tmp_path):
    """Factory: receivers(mode, host=..., **flags) -> Receiver, a
    receiver.py process (fast, slow, throttle), killed at teardown."""
    made = []

    def make(mode, **kw):
        r = Receiver(tmp_path, mode, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.kill()
