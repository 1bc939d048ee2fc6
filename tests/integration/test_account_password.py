"""`mailroom account`: passwords for SMTP AUTH (D17) and --quota (D16).

A password given with --password, --password-file or on standard input
(--password -) is kept in the store only as a PBKDF2 verifier: the
SQLite file is opened here to check that the column holds
"$pbkdf2-sha256$..." of exactly that password (recomputed with hashlib)
and never the password.  show and list say "set" or "none".  change sets
a new one or removes it (--no-password).  --quota N/PERIOD is
--allowance N --period PERIOD; without a quota an account is unlimited,
and a campaign on it is admitted and counted.  Every bad input is
refused with its exit status, and leaves the store as it was.  A store
of the previous schema opens, keeps its accounts and takes passwords.
"""
import base64
import hashlib
import hmac
import sqlite3
import subprocess

import pytest

from test_account_quota import (EX_DATAERR, EX_NOINPUT, EX_OK, EX_USAGE,
                                Env, assert_err, kv, run)

PREFIX = "$pbkdf2-sha256$"


@pytest.fixture
def env(mailroom, tmp_path):
    return Env(mailroom, tmp_path)


@pytest.fixture
def peer(aio_peer):
    return aio_peer(host="127.0.0.2")


def account_in(env, *args, stdin=None):
    """`mailroom account ARGS --store ...` with stdin as input."""
    return subprocess.run([env.mailroom, "account", *map(str, args),
                           "--store", str(env.store)],
                          input=stdin, capture_output=True, timeout=30)


def row(env, name):
    """The account's row, read straight from the SQLite file."""
    con = sqlite3.connect(env.store)
    try:
        con.row_factory = sqlite3.Row
        r = con.execute("SELECT * FROM accounts WHERE name = ?",
                        (name,)).fetchone()
        return dict(r) if r is not None else None
    finally:
        con.close()


def verifier(env, name):
    return row(env, name)["verifier"]


def matches(v, password):
    """Whether verifier v is of password (bytes), as verifier.c makes it."""
    assert v.startswith(PREFIX), v
    it, salt, want = v[len(PREFIX):].split("$")
    got = hashlib.pbkdf2_hmac("sha256", password, base64.b64decode(salt),
                              int(it), len(base64.b64decode(want)))
    return hmac.compare_digest(got, base64.b64decode(want))


def assert_stored(env, name, password):
    """The store holds a verifier of password, and not the password."""
    v = verifier(env, name)
    assert v is not None and v.startswith(PREFIX), v
    assert password.decode("latin-1") not in v
    assert matches(v, password), (v, password)
    return v


def assert_no_password_anywhere(env, password):
    """Not in the store file nor its WAL, in any form a reader can grep."""
    for p in env.dir.glob("store.db*"):
        assert password not in p.read_bytes(), p


# ------------------------------------------------------------ passwords

def test_add_with_each_source(env):
    r = env.account("add", "arg", "--password", "s3cret arg")
    assert r.returncode == EX_OK, r
    assert r.stdout.strip() == \
        "account arg: no quota (unlimited), password set"
    assert_stored(env, "arg", b"s3cret arg")

    # From a file: its first line, without CRLF; the rest is ignored.
    pw = env.dir / "pw.txt"
    pw.write_bytes(b"from-file \xc3\xa9\r\nsecond line\n")
    r = env.account("add", "file", "--password-file", pw, "--quota",
                    "1000/1d")
    assert r.returncode == EX_OK, r
    assert r.stdout.strip() == ("account file: 1000 messages per 1d, "
                                "warning at 80%, password set")
    assert_stored(env, "file", "from-file \u00e9".encode())
    assert not matches(verifier(env, "file"), b"second line")

    # Standard input, through --password - and --password-file -; a last
    # line without a line end is a line.
    r = account_in(env, "add", "stdin", "--password", "-",
                   stdin=b"from stdin\nnot this\n")
    assert r.returncode == EX_OK, r
    assert_stored(env, "stdin", b"from stdin")
    r = account_in(env, "add", "stdin2", "--password-file", "-",
                   stdin=b"no line end")
    assert r.returncode == EX_OK, r
    assert_stored(env, "stdin2", b"no line end")

    # The longest allowed: 1024 bytes.
    r = env.account("add", "long", "--password", "p" * 1024)
    assert r.returncode == EX_OK, r
    assert_stored(env, "long", b"p" * 1024)

    q = env.show("arg")
    assert q["password"] == "set", q
    assert q["allowance"] == "unlimited" and q["remaining"] == "unlimited"
    assert all("s3cret" not in v and PREFIX not in v for v in q.values())
    lines = env.account("list").stdout.splitlines()
    assert lines[0].split()[-1] == "PASSWORD"
    assert {ln.split()[0]: ln.split()[-1] for ln in lines[1:]} == {
        "arg": "set", "file": "set", "long": "set", "stdin": "set",
        "stdin2": "set"}
    assert "s3cret" not in "\n".join(lines) and PREFIX not in lines[1]
    # Two verifiers of one password differ (the salt).
    env.account("add", "same", "--password", "s3cret arg")
    assert verifier(env, "same") != verifier(env, "arg")
    for p in (b"s3cret arg", b"from-file", b"from stdin"):
        assert_no_password_anywhere(env, p)


def test_iterations_follow_the_registry_knob(env):
    r = env.account("add", "fast", "--password", "pw", "-o",
                    "registry.pbkdf2_iterations=2000")
    assert r.returncode == EX_OK, r
    assert verifier(env, "fast").startswith(PREFIX + "2000$")
    r = env.account("add", "default", "--password", "pw")
    assert verifier(env, "default").startswith(PREFIX + "50000$")


def test_change_and_remove_password(env):
    assert env.account("add", "acme", "--allowance", "10", "--period",
                       "1h").returncode == EX_OK
    assert verifier(env, "acme") is None
    assert env.show("acme")["password"] == "none"

    r = env.account("change", "acme", "--password", "first")
    assert r.returncode == EX_OK, r
    assert r.stdout.strip() == ("account acme: 10 messages per 1h, "
                                "warning at 80%, password set")
    first = assert_stored(env, "acme", b"first")
    r = account_in(env, "change", "acme", "--password", "-",
                   stdin=b"second\n")
    assert r.returncode == EX_OK, r
    assert_stored(env, "acme", b"second")
    assert verifier(env, "acme") != first
    pw = env.dir / "pw"
    pw.write_text("third\n")
    r = env.account("change", "acme", "--password-file", pw, "--warn", "50")
    assert r.returncode == EX_OK, r
    assert_stored(env, "acme", b"third")
    q = env.show("acme")
    assert (q["password"], q["allowance"], q["warn"]) == ("set", "10", "50%")

    # Other changes keep the password.
    assert env.account("change", "acme", "--allowance", "20").returncode == 0
    assert_stored(env, "acme", b"third")

    r = env.account("change", "acme", "--no-password")
    assert r.returncode == EX_OK, r
    assert r.stdout.strip().endswith(", no password")
    assert verifier(env, "acme") is None
    assert env.show("acme")["password"] == "none"
    # Removing what is not there is no error.
    assert env.account("change", "acme", "--no-password").returncode == 0
    assert row(env, "acme")["allowance"] == 20


# ------------------------------------------------------------ quotas

def test_quota_synonym_and_no_quota(env):
    r = env.account("add", "q", "--quota", "1000/1d", "--warn", "90")
    assert r.returncode == EX_OK, r
    q = env.show("q")
    assert (q["allowance"], q["period"], q["warn"]) == ("1000", "1d", "90%")
    assert env.account("change", "q", "--quota", "5/3600s").returncode == 0
    q = env.show("q")
    assert (q["allowance"], q["period"], q["remaining"]) == ("5", "1h", "5")

    r = env.account("change", "q", "--no-quota")
    assert r.returncode == EX_OK, r
    assert r.stdout.strip() == "account q: no quota (unlimited), no password"
    q = env.show("q")
    assert (q["allowance"], q["remaining"]) == ("unlimited", "unlimited")
    line = [ln for ln in env.account("list").stdout.splitlines()
            if ln.startswith("q ")][0]
    assert line.split()[1] == "unlimited"

    # Back to a quota: both numbers are needed.
    assert_err(env.account("change", "q", "--allowance", "7"), EX_USAGE,
               "has no quota", "--quota")
    assert_err(env.account("change", "q", "--period", "1d"), EX_USAGE,
               "has no quota")
    assert env.show("q")["allowance"] == "unlimited"
    assert env.account("change", "q", "--allowance", "7", "--period",
                       "2h").returncode == 0
    assert (env.show("q")["allowance"], env.show("q")["period"]) == \
        ("7", "2h")

    # A bare add: no quota, no password.
    r = env.account("add", "bare")
    assert r.returncode == EX_OK, r
    assert r.stdout.strip() == "account bare: no quota (unlimited), " \
        "no password"


def test_campaign_on_an_account_without_quota_is_admitted(env, peer):
    assert env.account("add", "free", "--password", "pw").returncode == 0
    r = env.send(peer, "c1", "free", 6)
    assert r.returncode == EX_OK, r
    assert len(peer.messages) == 6
    assert "warning" not in r.stderr and "allowance" not in r.stderr, \
        r.stderr
    q = env.show("free")
    assert (q["used"], q["reserved"], q["remaining"]) == \
        ("6", "0", "unlimited")
    # A second one while the first's use counts: still admitted.
    r = env.send(peer, "c2", "free", 3, prefix="s")
    assert r.returncode == EX_OK, r
    assert env.usage("free") == (9, 0)


# ------------------------------------------------------------ refusals

def test_bad_inputs_refused(env):
    assert env.account("add", "acme", "--password", "keep").returncode == 0
    before = verifier(env, "acme")
    pw = env.dir / "pw"

    def file_with(content):
        pw.write_bytes(content)
        return pw

    usage = [
        (("add", "x", "--password", ""), "--password refused: it is empty"),
        (("add", "x", "--password", "p" * 1025), "longer than 1024 bytes"),
        (("add", "x", "--password", "a\nb"), "line break"),
        (("add", "x", "--password", "a\rb"), "line break"),
        (("add", "x", "--quota", "1000"), 'no "/"'),
        (("add", "x", "--quota", "0/1d"), "0 messages"),
        (("add", "x", "--quota", "-5/1d"), "not a number"),
        (("add", "x", "--quota", "abc/1d"), "not a number"),
        (("add", "x", "--quota", "/1d"), "not a number"),
        (("add", "x", "--quota", "10/1w"), "period"),
        (("add", "x", "--quota", "10/"), "period"),
        (("add", "x", "--quota", "10/1500ms"), "period"),
        (("add", "x", "--quota", "10/1d/2"), "period"),
        (("add", "x", "--quota", "99999999999999999999/1d"),
         "not a number"),
        (("add", "x", "--quota", "10/1d", "--allowance", "10"), "not both"),
        (("add", "x", "--period", "1d", "--quota", "10/1d"), "not both"),
        (("add", "x", "--allowance", "10"), "--allowance and --period"),
        (("add", "x", "--password", "a", "--password-file", "f"),
         "not both"),
        (("add", "x", "--no-password"), "change only"),
        (("add", "x", "--no-quota"), "change only"),
        (("change", "acme", "--no-password", "--password", "a"),
         "--no-password"),
        (("change", "acme", "--no-quota", "--quota", "1/1d"), "--no-quota"),
        (("change", "acme", "--no-quota", "--allowance", "1"),
         "--no-quota"),
        (("change", "acme", "--password", ""), "it is empty"),
        (("show", "acme", "--password", "a"), "takes no password"),
        (("list", "--quota", "1/1d"), "takes no limits"),
        (("change", "acme"), "nothing to change"),
    ]
    for args, needle in usage:
        r = env.account(*args)
        assert r.returncode == EX_USAGE, (args, r)
        assert needle in r.stderr, (args, r.stderr)
        assert "keep" not in r.stderr and "p" * 100 not in r.stderr

    data = [
        (b"", "is empty"),
        (b"\nsecond\n", "first line is empty"),
        (b"\r\n", "first line is empty"),
        (b"a\0b\n", "NUL"),
        (b"p" * 1025 + b"\n", "longer than 1024 bytes"),
        (b"p" * 5000, "too long"),
        (b"a\rb\n", "line break"),
    ]
    for content, needle in data:
        for add in (("add", "x", "--password-file", file_with(content)),
                    ("change", "acme", "--password-file", pw)):
            r = env.account(*add)
            assert_err(r, EX_DATAERR, "password file", needle,
                       "only the first line is used")
        for opt in ("--password", "--password-file"):
            r = account_in(env, "add", "x", opt, "-", stdin=content)
            assert r.returncode == EX_DATAERR, (content, r)
            assert b"password from standard input refused" in \
                r.stderr, r.stderr
            assert b"only the first line is used" in r.stderr
    r = env.account("add", "x", "--password-file", env.dir / "missing")
    assert_err(r, EX_NOINPUT, "password file", "No such file")

    # Nothing was written.
    assert row(env, "x") is None
    assert verifier(env, "acme") == before
    assert env.show("acme")["allowance"] == "unlimited"


def test_help(env):
    r = run(env.mailroom, "account", "add", "--help")
    assert r.returncode == 0
    for s in ("--quota N/PERIOD", "--password P", "--password-file FILE",
              "first line", "ps(1)", "1 to 1024 bytes"):
        assert s in r.stdout, (s, r.stdout)
    r = run(env.mailroom, "account", "change", "--help")
    assert "--no-password" in r.stdout and "--no-quota" in r.stdout
    r = run(env.mailroom, "account", "show", "--help")
    assert "password: set" in r.stdout and "--password P" not in r.stdout


# ------------------------------------------------------------ old stores

def test_store_of_the_previous_schema(env):
    """A schema 2 store (accounts without the verifier column) opens,
    keeps its accounts and counters, and takes a password."""
    assert env.account("add", "old", "--quota", "100/1d").returncode == 0
    con = sqlite3.connect(env.store, isolation_level=None)
    try:
        con.execute("ALTER TABLE accounts DROP COLUMN verifier")
        con.execute("INSERT INTO quota_usage (account, period_start, used) "
                    "VALUES ('old', "
                    "CAST(strftime('%s', 'now') AS INTEGER) / 86400 * 86400,"
                    " 17)")
        con.execute("PRAGMA user_version = 2")
    finally:
        con.close()

    q = env.show("old")
    assert (q["allowance"], q["used"], q["password"]) == ("100", "17", "none")
    con = sqlite3.connect(env.store)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 3
    finally:
        con.close()
    r = env.account("change", "old", "--password", "now-one")
    assert r.returncode == EX_OK, r
    assert_stored(env, "old", b"now-one")
    assert kv(env.account("show", "old").stdout)["used"] == "17"
