"""The LDAP registry (src/registry/registry_ldap.c, SPEC A1) against a real
slapd (slapd.py) with mailroom's schema (docs/ldap/mailroom.ldif).

Driven through registry_probe (tests/tools/registry_probe.c), a test-only
program that opens the registry with registry_open_ldap() and prints
what registry_user_get(), registry_user_list() and registry_login_async()
give, as JSON lines, secrets included; and through `mailroom registry`
with registry.source = ldap.  The directory's sealed values and
verifiers are made as an operator makes them, with `mailroom registry
account seal` and `user seal`.

Covered: a user with accounts, secrets unsealed, defaults, case; unknown
users and filter injection; duplicate entries; logins by bind and by
verifier, APOP; the listing; read-only refusals; slapd down at open and
after it (one reconnect), wrong bind password, wrong key file, values
sealed for another entry, malformed entries, a missing base DN.
"""
import hashlib
import json
import os
import pathlib
import socket
import subprocess
import time

import pytest

from conftest import mailroom_path
from slapd import slapd  # noqa: F401  (the fixture)


def probe_path():
    """$REGISTRY_PROBE, else tests/registry_probe next to the binary."""
    path = os.environ.get("REGISTRY_PROBE") or str(
        pathlib.Path(mailroom_path()).parent / "tests" / "registry_probe")
    if not os.access(path, os.X_OK):
        pytest.exit(f"registry_probe not found at {path}: build it first",
                    returncode=2)
    return path


class Probe:
    """registry_probe bound to one slapd, key file and bind identity."""

    def __init__(self, directory, s, key=None, bind=True, base=None):
        self.path = probe_path()
        self.dir = pathlib.Path(directory)
        self.s = s
        self.key = key or self.new_key("key")
        self.pw_file = self.dir / "bind.pw"
        self.pw_file.write_text(s.service_pw + "\n")
        os.chmod(self.pw_file, 0o600)
        self.bind = bind
        self.base = base or s.suffix

    def new_key(self, name):
        path = self.dir / name
        path.write_bytes(os.urandom(32))
        os.chmod(path, 0o600)
        return path

    def argv(self, *args, uri=None, key=None):
        argv = [self.path, "--ldap", uri or self.s.uri, self.base]
        if self.bind:
            argv += ["--bind-dn", self.s.service_dn,
                     "--bind-pw-file", str(self.pw_file)]
        return argv + ["--key-file", str(key or self.key), *args]

    def run(self, *args, stdin="", uri=None, key=None, check=True):
        r = subprocess.run(self.argv(*args, uri=uri, key=key), input=stdin,
                           capture_output=True, text=True, timeout=60)
        if check:
            assert r.returncode == 0, r.stdout + r.stderr
        return r

    def lines(self, *args, **kw):
        r = self.run(*args, **kw)
        return [json.loads(x) for x in r.stdout.splitlines()]

    def get(self, name, **kw):
        return self.lines("get", name, **kw)[0]

    def login(self, name, password):
        return self.lines("login", name, stdin=password + "\n")[0]

    def seal(self, what, secret, key=None):
        """`mailroom registry account seal ID` (what "account:ID") or
        `user seal NAME --apop-secret-file` ("apop:NAME"): the value."""
        kind, _, operand = what.partition(":")
        option = "--secret-file" if kind == "account" else \
            "--apop-secret-file"
        return self._registry_seal("account" if kind == "account" else
                                   "user", operand, option, secret, key)

    def verifier(self, name, password):
        """`mailroom registry user seal NAME --password-file -`."""
        return self._registry_seal("user", name, "--password-file",
                                   password, None)

    def _registry_seal(self, obj, operand, option, secret, key):
        r = subprocess.run(
            [mailroom_path(), "registry", "--key-file", str(key or self.key),
             "-o", "registry.pbkdf2_iterations=1000", obj, "seal", operand,
             option, "-"], input=secret + "\n", capture_output=True,
            text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert secret not in r.stdout
        (line,) = r.stdout.splitlines()
        return line.split(": ", 1)[1]


@pytest.fixture
def env(slapd, tmp_path):  # noqa: F811
    """A slapd with alice (two accounts, APOP secret, LDAP password pw-a)
    and bob (no accounts), and a Probe on it."""
    s = slapd()
    p = Probe(tmp_path, s)
    alice = s.add_user("alice", password="pw-a",
                       apop_secret=p.seal("apop:alice", "apop-a"))
    s.add_account(alice, 20, "pop.b.test", "alice-b",
                  p.seal("account:20", "secret-b"), tls="stls")
    s.add_account(alice, 3, "pop.a.test", "alice@a.test",
                  p.seal("account:3", "secret-a"), port=1995,
                  tls="POP3S")
    s.add_account(alice, 7, "192.0.2.1", "alice-c",
                  p.seal("account:7", "secret-c"), tls="none")
    s.add_user("bob", password="pw-b", structural="account")
    return s, p


def test_user_with_accounts_secrets_unsealed(env):
    s, p = env
    got = p.get("alice")
    assert got["status"] == "ok"
    u = got["user"]
    assert u["name"] == "alice"
    assert u["verifier"] is None  # checked by a bind
    assert u["apop_secret"] == "apop-a"
    # In id order; port from the entry or from the TLS mode.
    assert [(a["id"], a["host"], a["port"], a["tls"], a["login"],
             a["secret"], a["user"]) for a in u["accounts"]] == [
        (3, "pop.a.test", 1995, "pop3s", "alice@a.test", "secret-a",
         "alice"),
        (7, "192.0.2.1", 110, "none", "alice-c", "secret-c", "alice"),
        (20, "pop.b.test", 110, "stls", "alice-b", "secret-b", "alice")]
    # No mailroomTls: TLS from the first byte, on 995.
    s.add_account(s.user_dn("bob"), 9, "pop.d.test", "bob",
                  p.seal("account:9", "secret-d"))
    (a,) = p.get("bob")["user"]["accounts"]
    assert (a["tls"], a["port"]) == ("pop3s", 995)


def test_names_match_without_case_and_come_back_as_stored(env):
    s, p = env
    got = p.get("ALICE")
    assert got["status"] == "ok"
    assert got["user"]["name"] == "alice"
    assert got["user"]["apop_secret"] == "apop-a"


def test_unknown_and_impossible_users(env):
    s, p = env
    for name in ["carol", "alic", "alice2", "a lice", "\u00e9", "x" * 300]:
        got = p.get(name)
        assert got["status"] == "ENOENT", name
        assert got["user"] is None


INJECTIONS = [
    "*", "a*", "*e", "al*ce", "*)(uid=*", "alice)(uid=*", "*)(|(uid=*",
    "alice)(objectClass=*", "*))(|(uid=*", "\\2a", "\\", "(", ")",
    "alice)", "(uid=alice)", "*)(&", "alice\\29(uid=*",
]


@pytest.mark.parametrize("name", INJECTIONS)
def test_filter_injection_matches_nothing(env, name):
    s, p = env
    got = p.get(name)
    assert got["status"] == "ENOENT", got
    assert got["user"] is None
    assert p.login(name, "pw-a")["status"] == "EACCES"


def test_names_with_filter_characters_are_found_exactly(env):
    s, p = env
    odd = "x*)(uid=*\\y"
    s.add_user(odd, password="pw-odd")
    s.add_user("x", password="pw-x")
    got = p.get(odd)
    assert got["status"] == "ok"
    assert got["user"]["name"] == odd
    assert p.get("x")["user"]["name"] == "x"
    assert p.get("x*")["status"] == "ENOENT"
    assert p.login(odd, "pw-odd")["status"] == "ok"
    assert p.login(odd, "pw-x")["status"] == "EACCES"


def test_two_entries_with_one_uid_are_refused(env):
    s, p = env
    s.add_entry("ou=more," + s.suffix, {"objectClass": "organizationalUnit",
                                         "ou": "more"})
    s.add_entry("uid=alice,ou=more," + s.suffix, {
        "objectClass": ["account", "mailroomUser"], "uid": "alice"})
    got = p.get("alice")
    assert got["status"] == "EIO"
    assert "more than one entry" in got["error"]
    assert p.login("alice", "pw-a")["status"] == "EIO"


def test_login_by_bind(env):
    s, p = env
    ok = p.login("alice", "pw-a")
    assert ok["status"] == "ok"
    assert ok["user"]["name"] == "alice"
    assert [a["secret"] for a in ok["user"]["accounts"]] == \
        ["secret-a", "secret-c", "secret-b"]
    assert p.login("Alice", "pw-a")["status"] == "ok"
    assert p.login("bob", "pw-b")["status"] == "ok"
    for name, password in [("alice", "pw-b"), ("alice", "PW-A"),
                           ("alice", ""), ("carol", "pw-a"),
                           ("carol", ""), ("bob", "pw-a")]:
        got = p.login(name, password)
        assert got["status"] == "EACCES", (name, password)
        assert got["user"] is None
    # A user without userPassword cannot log in by bind.
    s.add_user("dave", structural="account")
    assert p.login("dave", "")["status"] == "EACCES"
    assert p.login("dave", "anything")["status"] == "EACCES"


def test_many_logins_at_once(env):
    """Queued together: the workers, each with its own connections, give
    every login its own answer."""
    s, p = env
    names = ["alice", "bob", "carol", "ALICE"] * 10
    out = p.lines("login", *names, stdin="pw-a\n")
    assert [x["status"] for x in out] == ["ok", "EACCES", "EACCES",
                                          "ok"] * 10
    assert all(x["user"]["name"] == "alice" for x in out
               if x["status"] == "ok")


def test_login_by_verifier(env):
    s, p = env
    s.replace(s.user_dn("alice"), "mailroomVerifier",
              p.verifier("alice", "verified-pw"))
    got = p.get("alice")
    assert got["user"]["verifier"].startswith("$pbkdf2-sha256$")
    assert p.login("alice", "verified-pw")["status"] == "ok"
    # With a verifier, the directory password is not asked.
    assert p.login("alice", "pw-a")["status"] == "EACCES"
    assert p.login("alice", "")["status"] == "EACCES"


def test_apop(env):
    s, p = env
    ts = "<1896.697170952@dbc.mtview.ca.us>"
    digest = hashlib.md5((ts + "apop-a").encode()).hexdigest()
    got = p.lines("apop", "alice", ts, digest)[0]
    assert got["status"] == "ok"
    assert got["user"]["apop_secret"] == "apop-a"
    bad = hashlib.md5((ts + "apop-b").encode()).hexdigest()
    assert p.lines("apop", "alice", ts, bad)[0]["status"] == "EACCES"
    # bob has no APOP secret.
    digest = hashlib.md5((ts + "").encode()).hexdigest()
    assert p.lines("apop", "bob", ts, digest)[0]["status"] == "EACCES"


def test_list(env):
    s, p = env
    s.add_user("aaron", password="x")
    out = p.lines("list")
    assert out[-1] == {"status": "ok", "error": None}
    users = [x["user"] for x in out[:-1]]
    assert [u["name"] for u in users] == ["aaron", "alice", "bob"]
    alice = users[1]
    assert [a["id"] for a in alice["accounts"]] == [3, 7, 20]
    # Listed as stored: sealed.
    assert alice["apop_secret"].startswith("v1:")
    assert all(a["secret"].startswith("v1:") for a in alice["accounts"])
    assert users[0]["apop_secret"] is None


def test_list_goes_past_the_size_limit(env):
    s, p = env
    # slapd's default size limit is 500 entries a search.
    ldif = "\n".join(
        f"dn: uid=u{i:04d},{s.people_dn}\nobjectClass: account\n"
        f"objectClass: mailroomUser\nuid: u{i:04d}\n"
        for i in range(1200))
    s.ldapadd(ldif)
    out = p.lines("list")
    assert out[-1]["status"] == "ok"
    names = [x["user"]["name"] for x in out[:-1]]
    assert len(names) == 1202
    assert names == sorted(names)


def test_read_only(env):
    s, p = env
    got = p.lines("add-user", "zed", "pw")[0]
    assert got["status"] == "ENOTSUP"
    assert "read only" in got["error"]


def test_slapd_down_at_open(env):
    s, p = env
    s.stop(cleanup=False)
    t0 = time.monotonic()
    r = p.run("get", "alice", check=False)
    assert time.monotonic() - t0 < 15
    assert r.returncode == 1
    got = json.loads(r.stdout)
    assert got["status"] == "EIO"
    assert s.uri in got["error"]
    assert "Can't contact LDAP server" in got["error"]
    s.start()


class Paused:
    """registry_probe in the background with "-" pauses among its
    operands: read() its JSON lines, resume() after each pause."""

    def __init__(self, argv, stdin=""):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        if stdin:
            self.proc.stdin.write(stdin)
            self.proc.stdin.flush()

    def read(self, n=1):
        return [json.loads(self.proc.stdout.readline()) for _ in range(n)]

    def pause(self):
        assert self.read() == [{"pause": True}]

    def resume(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


def test_slapd_down_after_open_then_back(env):
    s, p = env
    run = Paused(p.argv("get", "alice", "-", "alice", "-", "alice", "-",
                        "alice"))
    try:
        assert run.read()[0]["status"] == "ok"
        run.pause()
        # Restarted while the probe holds its connection: one reconnect.
        s.stop(cleanup=False)
        s.start()
        run.resume()
        assert run.read()[0]["status"] == "ok"
        run.pause()
        # Gone: a clear error, not a hang.
        s.stop(cleanup=False)
        run.resume()
        (got,) = run.read()
        assert got["status"] == "EIO"
        assert s.uri in got["error"]
        assert "Can't contact LDAP server" in got["error"]
        run.pause()
        # Back: found again.
        s.start()
        run.resume()
        assert run.read()[0]["status"] == "ok"
    finally:
        run.close()


def test_logins_while_slapd_is_down_then_back(env):
    """The workers start with the first login, here while the directory
    is down: their logins fail, and work once it is back."""
    s, p = env
    run = Paused(p.argv("login", "-", "alice", "bob", "-", "alice",
                        "alice", "bob"), stdin="pw-a\n")
    try:
        run.pause()
        s.stop(cleanup=False)
        run.resume()
        assert [x["status"] for x in run.read(2)] == ["EIO", "EIO"]
        run.pause()
        s.start()
        run.resume()
        assert [x["status"] for x in run.read(3)] == \
            ["ok", "ok", "EACCES"]
    finally:
        run.close()


def test_wrong_bind_password(env, tmp_path):
    s, p = env
    p.pw_file.write_text("not-the-password\n")
    r = p.run("get", "alice", check=False)
    assert r.returncode == 1
    got = json.loads(r.stdout)
    assert got["status"] == "EIO"
    assert f"bind as {s.service_dn} failed: Invalid credentials" in \
        got["error"]
    assert "not-the-password" not in r.stdout + r.stderr


def test_anonymous_sees_no_secrets(env):
    s, p = env
    p.bind = False
    got = p.get("alice")
    assert got["status"] == "EIO"
    assert "lacks mailroomSecret (or the bind DN may not read it)" in \
        got["error"]
    # A user without accounts or APOP secret is readable.
    s.add_user("erin", password="pw-e")
    assert p.get("erin")["status"] == "ok"
    assert p.login("erin", "pw-e")["status"] == "ok"


def test_wrong_key_file(env):
    s, p = env
    other = p.new_key("other-key")
    got = p.get("alice", key=other)
    assert got["status"] == "EIO"
    assert "APOP secret" in got["error"]
    assert "sealed with another key file" in got["error"]
    assert "apop-a" not in got["error"]
    assert p.get("bob", key=other)["status"] == "ok"
    got = p.lines("login", "alice", stdin="pw-a\n", key=other)[0]
    assert got["status"] == "EIO"
    r = p.run("get", "alice", key=p.dir / "missing", check=False)
    assert r.returncode == 1
    assert json.loads(r.stdout)["status"] == "EIO"


def test_sealed_value_moved_to_another_entry(env):
    s, p = env
    # account 7's secret copied onto account 3: it does not open there.
    (_, a7), = s.search(base="mailroomAccountId=7," + s.user_dn("alice"),
                        scope="base")
    s.replace("mailroomAccountId=3," + s.user_dn("alice"), "mailroomSecret",
              a7["mailroomSecret"][0])
    got = p.get("alice")
    assert got["status"] == "EIO"
    assert "account 3" in got["error"]
    assert "does not open with this key file" in got["error"]
    assert "secret-c" not in got["error"]


@pytest.mark.parametrize("attr,value,words", [
    ("mailroomTls", "starttls", 'mailroomTls "starttls" is not none'),
    ("mailroomPort", "70000", 'mailroomPort "70000" is not a number'),
    ("mailroomPort", "0", 'mailroomPort "0" is not a number'),
])
def test_malformed_account(env, attr, value, words):
    s, p = env
    s.replace("mailroomAccountId=7," + s.user_dn("alice"), attr, value)
    got = p.get("alice")
    assert got["status"] == "EIO"
    assert "mailroomAccountId=7,uid=alice" in got["error"]
    assert words in got["error"]


def test_missing_base_dn(env):
    s, p = env
    p.base = "ou=nowhere," + s.suffix
    got = p.get("alice")
    assert got["status"] == "EIO"
    assert "does not exist" in got["error"]


def test_bad_uri(env):
    s, p = env
    r = p.run("get", "alice", uri="http://127.0.0.1/", check=False)
    assert r.returncode == 1
    assert "is not an LDAP URI" in json.loads(r.stdout)["error"]


# ------------------------------------------- through `mailroom registry`

def registry_cmd(mailroom, conf, *args):
    return subprocess.run([mailroom, "registry", "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=60)


def write_conf(path, s, p, **keys):
    """An INI file with [registry] source = ldap on s, bound as the
    service account (keys override or, as None, remove a key)."""
    values = {"source": "ldap", "key_file": str(p.key),
              "ldap_uri": s.uri, "ldap_base_dn": s.suffix,
              "ldap_bind_dn": s.service_dn,
              "ldap_bind_password_file": str(p.pw_file)}
    values.update(keys)
    path.write_text("[registry]\n" + "".join(
        f"{k} = {v}\n" for k, v in values.items() if v is not None))
    return path


def test_registry_cmd_lists_the_directory(env, mailroom, tmp_path):
    s, p = env
    conf = write_conf(tmp_path / "mailroom.conf", s, p)
    r = registry_cmd(mailroom, conf, "user", "list")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows == [["NAME", "APOP", "ACCOUNTS"], ["alice", "yes", "3"],
                    ["bob", "no", "0"]]
    r = registry_cmd(mailroom, conf, "account", "list", "alice")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[1:]]
    assert rows == [
        ["3", "alice", "pop.a.test", "1995", "pop3s", "alice@a.test"],
        ["7", "alice", "192.0.2.1", "110", "none", "alice-c"],
        ["20", "alice", "pop.b.test", "110", "stls", "alice-b"]]
    assert "secret" not in r.stdout
    # Changes are made in the directory, not here.
    r = registry_cmd(mailroom, conf, "user", "remove", "alice")
    assert r.returncode == 69
    assert "read only" in r.stderr
    assert len(s.search(filt="(uid=alice)")) == 1


def test_registry_cmd_configuration_errors(env, mailroom, tmp_path):
    s, p = env
    conf = tmp_path / "mailroom.conf"
    write_conf(conf, s, p, ldap_uri=None)
    r = registry_cmd(mailroom, conf, "user", "list")
    assert r.returncode == 69
    assert "needs registry.ldap_uri and registry.ldap_base_dn" in r.stderr
    write_conf(conf, s, p, ldap_bind_password_file=None)
    r = registry_cmd(mailroom, conf, "user", "list")
    assert "needs registry.ldap_bind_password_file" in r.stderr
    os.chmod(p.pw_file, 0o644)
    write_conf(conf, s, p)
    r = registry_cmd(mailroom, conf, "user", "list")
    assert r.returncode == 69
    assert "others may read it" in r.stderr
    assert s.service_pw not in r.stdout + r.stderr
    os.chmod(p.pw_file, 0o640)
    assert registry_cmd(mailroom, conf, "user", "list").returncode == 0
    write_conf(conf, s, p, ldap_uri="ldap://127.0.0.1:1")
    r = registry_cmd(mailroom, conf, "user", "list")
    assert r.returncode == 69
    assert "Can't contact LDAP server" in r.stderr


def test_registry_cmd_timeout(env, mailroom, tmp_path):
    """A directory that accepts the connection and never answers: given
    up after registry.ldap_timeout."""
    s, p = env
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        conf = write_conf(tmp_path / "mailroom.conf", s, p,
                          ldap_uri=f"ldap://127.0.0.1:{port}",
                          ldap_timeout="1s")
        t0 = time.monotonic()
        r = registry_cmd(mailroom, conf, "user", "list")
        elapsed = time.monotonic() - t0
    assert r.returncode == 69
    assert "Timed out" in r.stderr, r.stderr
    assert 0.9 < elapsed < 5


def test_registry_cmd_seal(mailroom, tmp_path):
    key = tmp_path / "new.key"
    secret = tmp_path / "secret"
    secret.write_text("backend-pw\n")
    r = subprocess.run([mailroom, "registry", "--key-file", str(key),
                        "account", "seal", "12", "--secret-file",
                        str(secret)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "made a new key file" in r.stderr
    assert os.stat(key).st_mode & 0o777 == 0o600
    (line,) = r.stdout.splitlines()
    assert line.startswith("mailroomSecret: v1:")
    assert "backend-pw" not in r.stdout + r.stderr
    for args, status in [
            (["account", "seal", "12"], 64),
            (["account", "seal", "12", "--secret-file", str(secret),
              "--host", "h"], 64),
            (["account", "seal", "x", "--secret-file", str(secret)], 64),
            (["user", "seal", "alice"], 64),
            (["user", "seal", "alice", "--secret-file", str(secret)], 64),
            (["user", "seal", "alice", "--password-file", "-"], 65)]:
        r = subprocess.run([mailroom, "registry", "--key-file", str(key),
                            *args], input="\n", capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == status, (args, r.stderr)
        assert r.stdout == ""
    os.chmod(key, 0o644)
    r = subprocess.run([mailroom, "registry", "--key-file", str(key),
                        "account", "seal", "12", "--secret-file",
                        str(secret)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and r.stdout == ""
    assert "may be read by" in r.stderr
