"""`mailroom registry`: the users of the POP3 proxy and their backend
accounts, in the store (SPEC A1).

The command's contract: user add/change/remove/list and account
add/change/remove/list, secrets from arguments, files or standard input,
defaults from the configuration, and a key file made on first use.  What
is kept is checked from outside: the verifier with hashlib's PBKDF2, the
sealed secrets with AES-256-GCM (python3-cryptography, when installed)
and their AADs.  Then every refusal, each with its exit status and a
sentence naming what is wrong: unknown user, duplicate user, account of
an unknown user, bad port, bad TLS mode, missing key file, the wrong key
file, a key file others can read or of the wrong size.  No secret ever
shows in what the command prints.
"""
import base64
import hashlib
import hmac
import os
import re
import sqlite3
import stat
import subprocess

import pytest

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_CONFIG = 0, 64, 65, 66, 78

SECRETS = ["pw-alice-1", "apop-alice-1", "backend-secret-1",
           "pw-from-file", "secret-from-stdin", "apop-from-file"]


class Env:
    """A store, a key file and the command against them."""

    def __init__(self, mailroom, tmp_path):
        self.mailroom = mailroom
        self.dir = tmp_path
        self.store = tmp_path / "store.db"
        self.key = tmp_path / "registry.key"
        self.outputs = []

    def run(self, *args, store=None, key=None, stdin=None, plain=False):
        argv = [self.mailroom, "registry"]
        if not plain:
            argv += ["--store", str(store or self.store),
                     "--key-file", str(key or self.key)]
        r = subprocess.run(argv + [str(a) for a in args], input=stdin,
                           capture_output=True, text=True, timeout=60)
        self.outputs.append(r.stdout + r.stderr)
        return r

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.returncode == EX_OK, r
        return r

    def rows(self, sql, *params):
        with sqlite3.connect(self.store) as db:
            return db.execute(sql, params).fetchall()


@pytest.fixture
def env(mailroom, tmp_path):
    e = Env(mailroom, tmp_path)
    yield e
    # Whatever happened, no secret was printed.
    for out in e.outputs:
        for s in SECRETS:
            assert s not in out, (s, out)


def assert_err(r, code, *needles):
    assert r.returncode == code, r
    assert re.search(r"^mailroom registry( \w+ \w+)?: ", r.stderr, re.M), r
    for n in needles:
        assert re.search(n, r.stderr, re.I), (n, r.stderr)


def b64(s):
    return base64.b64decode(s, validate=True)


def check_verifier(verifier, password):
    m = re.fullmatch(r"\$pbkdf2-sha256\$(\d+)\$([A-Za-z0-9+/=]+)\$"
                     r"([A-Za-z0-9+/=]+)", verifier)
    assert m, verifier
    salt, want = b64(m.group(2)), b64(m.group(3))
    assert len(salt) == 16 and len(want) == 32
    got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt,
                              int(m.group(1)), len(want))
    return hmac.compare_digest(got, want)


def unseal(key, aad, text):
    """Open a sealed value as seal.h describes it."""
    aead = pytest.importorskip(
        "cryptography.hazmat.primitives.ciphers.aead")
    m = re.fullmatch(r"v1:([0-9a-f]{8}):([A-Za-z0-9+/=]+)", text)
    assert m, text
    assert m.group(1) == hashlib.sha256(key).hexdigest()[:8]
    raw = b64(m.group(2))
    return aead.AESGCM(key).decrypt(raw[:12], raw[12:],
                                    aad.encode()).decode()


def test_help(env):
    r = env.run("--help", plain=True)
    assert r.returncode == 0 and "user add NAME" in r.stdout
    assert "--password-file" in r.stdout and "ps(1)" in r.stdout
    r = env.run("account", "add", "--help", plain=True)
    assert r.returncode == 0 and "--tls none|stls|pop3s" in r.stdout
    r = env.run(plain=True)
    assert r.returncode == EX_USAGE and "usage:" in r.stderr, r
    assert_err(env.run("group", "add", "x"), EX_USAGE, "unknown object")
    assert_err(env.run("user", "rename", "x"), EX_USAGE, "unknown command")
    assert_err(env.run("user", "add"), EX_USAGE, "which user")
    assert_err(env.run("user", "list", "extra"), EX_USAGE, "unexpected")
    assert_err(env.run("user", "add", "a b", "--password", "x"), EX_USAGE,
               "refused")
    assert_err(env.run("user", "add", "alice"), EX_USAGE,
               "password is required")
    assert_err(env.run("user", "add", "alice", "--password", "x",
                       "--host", "h"), EX_USAGE, "do not go")
    assert_err(env.run("account", "remove", "abc"), EX_USAGE,
               "not an account id")
    assert_err(env.run("user", "change", "alice"), EX_USAGE,
               "nothing to change")
    assert not env.store.exists() and not env.key.exists()


def test_round_trip(env):
    r = env.ok("user", "add", "alice", "--password", "pw-alice-1",
               "--apop-secret", "apop-alice-1")
    assert "made a new key file" in r.stderr
    st = os.stat(env.key)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == 32
    key = env.key.read_bytes()
    r = env.ok("account", "add", "alice", "--host", "pop.example.com",
               "--port", "995", "--login", "alice@example.com",
               "--secret", "backend-secret-1", "--tls", "pop3s")
    assert re.fullmatch(r"\d+\n", r.stdout), r.stdout
    aid = int(r.stdout)
    r = env.ok("account", "add", "alice", "--host", "10.0.0.2", "--port",
               "110", "--login", "a2", "--secret", "s2")
    assert int(r.stdout) > aid
    assert "made a new key file" not in r.stderr

    # What the store keeps: a verifier, sealed secrets bound to rows.
    (verifier, apop), = env.rows(
        "SELECT verifier, apop FROM registry_users WHERE name = 'alice'")
    assert check_verifier(verifier, "pw-alice-1")
    assert not check_verifier(verifier, "pw-alice-2")
    (secret, host, port, tls), = env.rows(
        "SELECT secret, host, port, tls FROM registry_accounts "
        "WHERE id = ?", aid)
    assert (host, port, tls) == ("pop.example.com", 995, 2)
    dump = "\n".join(sqlite3.connect(env.store).iterdump())
    for s in SECRETS:
        assert s not in dump
    assert unseal(key, f"account:{aid}", secret) == "backend-secret-1"
    assert unseal(key, "apop:alice", apop) == "apop-alice-1"
    with pytest.raises(Exception):
        unseal(key, f"account:{aid + 1}", secret)

    r = env.ok("user", "list")
    assert re.search(r"^alice\s+yes\s+2$", r.stdout, re.M), r.stdout
    r = env.ok("account", "list", "alice")
    assert re.search(rf"^{aid}\s+alice\s+pop.example.com\s+995\s+pop3s\s+"
                     r"alice@example.com$", r.stdout, re.M), r.stdout
    assert "v1:" not in r.stdout

    env.ok("user", "change", "alice", "--apop-secret", "")
    r = env.ok("user", "list")
    assert re.search(r"^alice\s+no\s+2$", r.stdout, re.M), r.stdout
    env.ok("account", "change", aid, "--port", "1995", "--tls", "stls")
    r = env.ok("account", "list")
    assert re.search(rf"^{aid}\s+alice\s+pop.example.com\s+1995\s+stls",
                     r.stdout, re.M), r.stdout
    (secret2,), = env.rows("SELECT secret FROM registry_accounts "
                           "WHERE id = ?", aid)
    assert unseal(key, f"account:{aid}", secret2) == "backend-secret-1"
    env.ok("account", "remove", aid)
    env.ok("user", "remove", "alice")
    assert env.rows("SELECT count(*) FROM registry_accounts") == [(0,)]
    r = env.ok("user", "list")
    assert r.stdout.splitlines()[1:] == []


def test_secret_files(env):
    pw = env.dir / "pw"
    pw.write_text("pw-from-file\nsecond line ignored\n")
    apop = env.dir / "apop"
    apop.write_text("apop-from-file\r\n")
    env.ok("user", "add", "bob", "--password-file", pw,
           "--apop-secret-file", apop)
    key = env.key.read_bytes()
    (verifier, sealed), = env.rows(
        "SELECT verifier, apop FROM registry_users WHERE name = 'bob'")
    assert check_verifier(verifier, "pw-from-file")
    assert unseal(key, "apop:bob", sealed) == "apop-from-file"
    r = env.ok("account", "add", "bob", "--host", "h", "--port", "110",
               "--login", "l", "--secret-file", "-",
               stdin="secret-from-stdin\n")
    aid = int(r.stdout)
    (sealed,), = env.rows("SELECT secret FROM registry_accounts "
                          "WHERE id = ?", aid)
    assert unseal(key, f"account:{aid}", sealed) == "secret-from-stdin"
    env.ok("user", "change", "bob", "--password-file", "-",
           stdin="pw-alice-1\n")
    (verifier,), = env.rows(
        "SELECT verifier FROM registry_users WHERE name = 'bob'")
    assert check_verifier(verifier, "pw-alice-1")

    empty = env.dir / "empty"
    empty.write_text("")
    assert_err(env.run("user", "add", "carol", "--password-file", empty),
               EX_DATAERR, "empty")
    assert_err(env.run("user", "add", "carol", "--password-file",
                       env.dir / "missing"), EX_NOINPUT, "missing")
    assert_err(env.run("user", "add", "carol", "--password-file", "-",
                       "--apop-secret-file", "-", stdin="a\nb\n"),
               EX_USAGE, "only one secret")
    assert_err(env.run("user", "add", "carol", "--password", "x",
                       "--password-file", pw), EX_USAGE, "not both")


def test_refusals(env):
    env.ok("user", "add", "alice", "--password", "pw-alice-1")
    assert_err(env.run("user", "add", "alice", "--password", "x"),
               EX_DATAERR, "user alice exists")
    assert_err(env.run("account", "add", "nobody", "--host", "h", "--port",
                       "110", "--login", "l", "--secret", "s"),
               EX_NOINPUT, "no user nobody")
    for port in ("0", "65536", "abc", "-1", ""):
        assert_err(env.run("account", "add", "alice", "--host", "h",
                           "--port", port, "--login", "l", "--secret", "s"),
                   EX_USAGE, "not a port")
    assert_err(env.run("account", "add", "alice", "--host", "h", "--port",
                       "110", "--login", "l", "--secret", "s", "--tls",
                       "ssl"), EX_USAGE, "not a TLS mode")
    assert_err(env.run("account", "add", "alice", "--host", "h", "--port",
                       "110", "--login", "l"), EX_USAGE, "required")
    assert_err(env.run("account", "change", "42", "--port", "1"),
               EX_NOINPUT, "no account 42")
    assert_err(env.run("account", "remove", "42"), EX_NOINPUT,
               "no account 42")
    assert_err(env.run("account", "list", "nobody"), EX_NOINPUT,
               "no user nobody")
    assert_err(env.run("user", "remove", "nobody"), EX_NOINPUT,
               "no user nobody")
    assert_err(env.run("user", "change", "nobody", "--password", "x"),
               EX_NOINPUT, "no user nobody")
    assert env.rows("SELECT count(*) FROM registry_accounts") == [(0,)]


def test_missing_store(env):
    assert_err(env.run("user", "list"), EX_NOINPUT, "does not exist")
    assert not env.key.exists()


def test_key_files(env):
    env.ok("user", "add", "alice", "--password", "pw-alice-1",
           "--apop-secret", "apop-alice-1")
    # Missing: never replaced by a new one for an existing registry.
    gone = env.dir / "gone.key"
    for args in (("user", "list"),
                 ("user", "add", "bob", "--password", "x")):
        assert_err(env.run(*args, key=gone), EX_NOINPUT,
                   "gone.key does not exist")
    assert not gone.exists()
    # Another key file.
    other = env.dir / "other.key"
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    assert_err(env.run("user", "list", key=other), EX_CONFIG,
               "wrong key file")
    # Readable by others.
    env.key.chmod(0o640)
    assert_err(env.run("user", "list"), EX_CONFIG, "group or others",
               "0640")
    env.key.chmod(0o600)
    # The wrong size.
    short = env.dir / "short.key"
    short.write_bytes(os.urandom(16))
    short.chmod(0o600)
    assert_err(env.run("user", "list", key=short), EX_CONFIG,
               "16 bytes")
    env.ok("user", "list")


def test_config_defaults(env, tmp_path):
    conf = tmp_path / "mailroom.conf"
    conf.write_text(f"[store]\npath = {tmp_path / 'main.db'}\n"
                    f"[registry]\nkey_file = {tmp_path / 'cfg.key'}\n"
                    "pbkdf2_iterations = 2000\n")
    r = env.run("-c", conf, "user", "add", "dora", "--password",
                "pw-alice-1", plain=True)
    assert r.returncode == 0, r
    assert (tmp_path / "cfg.key").exists()
    with sqlite3.connect(tmp_path / "main.db") as db:
        (v,), = db.execute("SELECT verifier FROM registry_users").fetchall()
    assert v.startswith("$pbkdf2-sha256$2000$")
    assert check_verifier(v, "pw-alice-1")
    # registry.store wins over store.path.
    conf.write_text(conf.read_text() + f"store = {tmp_path / 'reg.db'}\n")
    r = env.run("-c", conf, "user", "list", plain=True)
    assert_err(r, EX_NOINPUT, "reg.db does not exist")
    bad = tmp_path / "bad.conf"
    bad.write_text("[registry]\nworkers = 0\n")
    r = env.run("-c", bad, "user", "list", plain=True)
    assert r.returncode == EX_CONFIG, r
