"""A real OpenLDAP slapd (2.5) for the LDAP registry's integration tests.

Slapd     a throwaway slapd (run as root, `slapd -d 0 -h ldap://127.0.0.1:
          PORT/ -F CONFIGDIR`) on a free loopback port, its cn=config made
          by slapadd from LDIF in a fresh temporary directory: an mdb
          database for the suffix dc=example,dc=test, the schemas core,
          cosine, inetorgperson and mailroom's own (docs/ldap/mailroom.ldif,
          loaded as it is, so the schema is tested too), the unique overlay
          on mailroomAccountId, and the ACLs a production directory would
          have (below).  Stopped by PID.  Helpers add users and backend
          accounts, change or delete entries, search, and check a bind.
slapd     pytest fixture: a factory slapd(**kw) -> Slapd, stopped at
          teardown (import it into the test module to use it).

The directory tree made at start (slapadd, before slapd runs)::

    dc=example,dc=test                   dcObject, organization
      ou=people                          the users (people_dn)
      ou=services                        service accounts
        cn=mailroom                      what mailroom binds as
                                         (service_dn, service_pw)

add_user() puts uid=NAME,ou=people,... (inetOrgPerson + mailroomUser, or
account + mailroomUser), add_account() a mailroomAccountId=ID child entry
under it.  The root DN (cn=admin,dc=example,dc=test, root_pw) writes
everything; the helpers run ldapadd, ldapmodify, ldapdelete and
ldapsearch with it (passwords through -y files, never on a command line).

ACLs, in order::

    to attrs=userPassword  by self write  by anonymous auth  by * none
    to attrs=mailroomVerifier,mailroomApopSecret,mailroomSecret
                           by dn.exact=<service_dn> read  by * none
    to *                   by * read

so the service account reads the sealed secrets and the verifier but
never userPassword: a password is checked by binding as the user.
Limits: the default size limit (500 entries a search), except that the
service account's paged searches have no total (size.prtotal=unlimited),
so listing users works however many there are.

Facts checked on slapd 2.5.13 (Debian 12) by test_slapd_selftest.py:
slapd -d 0 stays in the foreground and logs nothing at level 0; it
answers a search about 100 ms after it starts; SIGTERM stops it in well
under a second.  A bind with a DN and an empty password is an
unauthenticated bind, which slapd refuses (unwillingToPerform, 53) by
default; a bind as an entry without userPassword fails with
invalidCredentials (49), as does a wrong password or an unknown DN.  A
second account entry with a mailroomAccountId already used anywhere
under the suffix is refused (constraintViolation, 19) by the unique
overlay.  The uid filter is case-insensitive (uid's caseIgnoreMatch).
"""
import base64
import hashlib
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, free_port, server_factory

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = pathlib.Path("/etc/ldap/schema")
MAILROOM_SCHEMA = ROOT / "docs" / "ldap" / "mailroom.ldif"
MODULE_DIR = "/usr/lib/ldap"


def ssha(password):
    """userPassword value {SSHA}: base64(SHA-1(password salt) salt)."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _safe(value):
    """Whether value may be written plainly in LDIF (RFC 2849 SAFE-STRING,
    and no trailing space, which readers may strip)."""
    if value == "":
        return True
    if value[0] in " :<" or value[-1] == " ":
        return False
    return all(0x01 <= ord(c) <= 0x7f and c not in "\r\n" for c in value)


def ldif_line(name, value):
    """One "name: value" line, base64 ("name:: ...") when it must be."""
    if isinstance(value, bytes):
        return f"{name}:: {base64.b64encode(value).decode()}"
    if _safe(value):
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def ldif_entry(dn, attrs):
    """An LDIF record: dn, then attrs {name: value or list of values}."""
    lines = [ldif_line("dn", dn)]
    for name, values in attrs.items():
        if values is None:
            continue
        if isinstance(values, (str, bytes, int)):
            values = [values]
        lines += [ldif_line(name, str(v) if isinstance(v, int) else v)
                  for v in values]
    return "\n".join(lines) + "\n"


def escape_dn_value(value):
    """An attribute value escaped for use in a DN (RFC 4514 section 2.4)."""
    out = []
    for i, c in enumerate(value):
        if c in ',+"\\<>;=' or (c == "#" and i == 0) or \
                (c == " " and i in (0, len(value) - 1)):
            out.append("\\" + c)
        elif c == "\0":
            out.append("\\00")
        else:
            out.append(c)
    return "".join(out)


class LdapError(RuntimeError):
    """An LDAP client tool failed; .code is its LDAP result code."""

    def __init__(self, what, code, output):
        super().__init__(f"{what}: exit {code}: {output}")
        self.code = code
        self.output = output


class Slapd:
    """A slapd serving dc=example,dc=test on a loopback TCP port.

    tmp_path: the test's directory (the log is copied there by stop());
      the instance itself lives in a fresh directory under the system
      temp directory (.dir).
    service_pw: the password of the service account mailroom binds as.
    schema: the mailroom schema file to load (another one, or None to
      load none, for tests of the schema itself).
    unique: the unique overlay on mailroomAccountId.
    start: start at once (else call start()).

    Attributes: host, port, uri, suffix, root_dn, root_pw, people_dn,
    service_dn, service_pw, dir, log_path, proc (None when stopped).
    stop(cleanup=False) then start() brings the same directory back on
    the same port (a directory that goes away and returns).
    """

    def __init__(self, tmp_path, service_pw="service-secret",
                 schema=MAILROOM_SCHEMA, unique=True, start=True):
        if os.geteuid() != 0 or not os.access(SLAPD, os.X_OK):
            raise RuntimeError(f"the slapd fixture runs {SLAPD} as root")
        self.tmp_path = pathlib.Path(tmp_path)
        self.host = "127.0.0.1"
        self.port = None
        self.proc = None
        self._out = None
        self.suffix = "dc=example,dc=test"
        self.root_dn = "cn=admin," + self.suffix
        self.root_pw = base64.b64encode(os.urandom(12)).decode()
        self.people_dn = "ou=people," + self.suffix
        self.service_dn = "cn=mailroom,ou=services," + self.suffix
        self.service_pw = service_pw
        self.schema = schema
        self.unique = unique
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-slapd-"))
        self.log_path = self.dir / "slapd.log"
        self._root_pw_file = self.dir / "root.pw"
        self._root_pw_file.write_text(self.root_pw)
        os.chmod(self._root_pw_file, 0o600)
        try:
            self._make_config()
            self._load_tree()
            if start:
                self.start()
        except BaseException:
            self.stop()
            raise

    @property
    def uri(self):
        return f"ldap://{self.host}:{self.port}"

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout=10.0):
        """Start slapd and wait until it answers a search.  The first
        start picks a free port (another when it turned out to be taken);
        a start after stop(cleanup=False) uses the same port again."""
        restart = self.port is not None
        for _ in range(1 if restart else 5):
            if not restart:
                self.port = free_port(self.host)
            self._out = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [SLAPD, "-d", "0", "-h", f"ldap://{self.host}:{self.port}/",
                 "-F", str(self.dir / "config")],
                stdin=subprocess.DEVNULL, stdout=self._out,
                stderr=subprocess.STDOUT)
            if self._wait_ready(timeout):
                return self
            self._stop_process()
            if "Address already in use" not in self._diagnostics():
                break
        raise RuntimeError("slapd did not start:\n" + self._diagnostics())

    def _wait_ready(self, timeout):
        """True once the root DSE can be read."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port),
                                              timeout=1):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            r = subprocess.run(
                ["ldapsearch", "-x", "-H", self.uri, "-b", "", "-s", "base",
                 "-o", "nettimeout=2", "namingContexts"],
                capture_output=True, text=True, timeout=10)
            if r.returncode == 0:
                return True
            time.sleep(0.05)
        return False

    def _diagnostics(self):
        if self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def stop(self, cleanup=True):
        """Stop slapd by PID.  Then, unless cleanup is False (to start()
        it again later), keep a copy of its log in tmp_path and remove
        .dir.  Safe to call twice."""
        self._stop_process()
        if cleanup and self.dir.exists():
            if self.log_path.exists() and self.log_path.parent == self.dir:
                saved = self.tmp_path / f"slapd-{self.port}.log"
                shutil.copyfile(self.log_path, saved)
                self.log_path = saved
            shutil.rmtree(self.dir, ignore_errors=True)

    def terminate(self):
        """SIGTERM slapd without waiting (stop() waits)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def _stop_process(self):
        if self.proc is None:
            return
        self.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --------------------------------------------------------- configuration

    def _config_ldif(self):
        d = self.dir
        includes = [SCHEMA_DIR / "core.ldif", SCHEMA_DIR / "cosine.ldif",
                    SCHEMA_DIR / "inetorgperson.ldif"]
        if self.schema is not None:
            includes.append(pathlib.Path(self.schema))
        modules = ["back_mdb"] + (["unique"] if self.unique else [])
        acl_secret = ("{1}to attrs=mailroomVerifier,mailroomApopSecret,"
                      f'mailroomSecret by dn.exact="{self.service_dn}" read '
                      "by * none")
        parts = [
            ldif_entry("cn=config", {
                "objectClass": "olcGlobal", "cn": "config",
                "olcPidFile": str(d / "slapd.pid"),
                "olcArgsFile": str(d / "slapd.args"),
                "olcLogLevel": "none"}),
            ldif_entry("cn=module{0},cn=config", {
                "objectClass": "olcModuleList", "cn": "module{0}",
                "olcModulePath": MODULE_DIR, "olcModuleLoad": modules}),
            ldif_entry("cn=schema,cn=config", {
                "objectClass": "olcSchemaConfig", "cn": "schema"}),
            "".join(f"include: file://{p}\n\n" for p in includes),
            ldif_entry("olcDatabase={-1}frontend,cn=config", {
                "objectClass": ["olcDatabaseConfig", "olcFrontendConfig"],
                "olcDatabase": "{-1}frontend"}),
            ldif_entry("olcDatabase={0}config,cn=config", {
                "objectClass": "olcDatabaseConfig",
                "olcDatabase": "{0}config",
                "olcAccess": "{0}to * by * none"}),
            ldif_entry("olcDatabase={1}mdb,cn=config", {
                "objectClass": ["olcDatabaseConfig", "olcMdbConfig"],
                "olcDatabase": "{1}mdb",
                "olcDbDirectory": str(d / "data"),
                "olcDbMaxSize": str(64 * 1024 * 1024),
                "olcSuffix": self.suffix,
                "olcRootDN": self.root_dn,
                "olcRootPW": ssha(self.root_pw),
                # Paged searches by the service account go past the size
                # limit (500), as docs/REGISTRY.md asks of a directory.
                "olcLimits": f'dn.exact="{self.service_dn}" '
                             "size.prtotal=unlimited",
                "olcAccess": [
                    "{0}to attrs=userPassword by self write "
                    "by anonymous auth by * none",
                    acl_secret,
                    "{2}to * by * read"]}),
        ]
        if self.unique:
            parts.append(ldif_entry(
                "olcOverlay={0}unique,olcDatabase={1}mdb,cn=config", {
                    "objectClass": ["olcOverlayConfig", "olcUniqueConfig"],
                    "olcOverlay": "{0}unique",
                    "olcUniqueURI": "ldap:///?mailroomAccountId?sub"}))
        return "\n".join(parts)

    def _make_config(self):
        (self.dir / "config").mkdir(mode=0o700)
        (self.dir / "data").mkdir(mode=0o700)
        path = self.dir / "config.ldif"
        path.write_text(self._config_ldif())
        self._run([SLAPADD, "-n", "0", "-F", str(self.dir / "config"),
                   "-l", str(path)], "slapadd cn=config")

    def _load_tree(self):
        path = self.dir / "tree.ldif"
        path.write_text("\n".join([
            ldif_entry(self.suffix, {
                "objectClass": ["dcObject", "organization"],
                "dc": "example", "o": "Example"}),
            ldif_entry(self.people_dn, {
                "objectClass": "organizationalUnit", "ou": "people"}),
            ldif_entry("ou=services," + self.suffix, {
                "objectClass": "organizationalUnit", "ou": "services"}),
            ldif_entry(self.service_dn, {
                "objectClass": ["organizationalRole",
                                "simpleSecurityObject"],
                "cn": "mailroom", "userPassword": ssha(self.service_pw)}),
        ]))
        self._run([SLAPADD, "-n", "1", "-F", str(self.dir / "config"),
                   "-l", str(path)], "slapadd tree")

    @staticmethod
    def _run(argv, what, stdin=None):
        r = subprocess.run(argv, input=stdin, capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise LdapError(what, r.returncode, r.stdout + r.stderr)
        return r.stdout

    # --------------------------------------------------------------- writing

    def _client(self, tool, *args):
        return [tool, "-x", "-H", self.uri, "-D", self.root_dn,
                "-y", str(self._root_pw_file), "-o", "nettimeout=5", *args]

    def ldapadd(self, ldif):
        """Add the entries of an LDIF text as the root DN."""
        self._run(self._client("ldapadd"), "ldapadd", stdin=ldif)

    def ldapmodify(self, ldif):
        """Apply an LDIF change text as the root DN."""
        self._run(self._client("ldapmodify"), "ldapmodify", stdin=ldif)

    def add_entry(self, dn, attrs):
        self.ldapadd(ldif_entry(dn, attrs))
        return dn

    def replace(self, dn, name, values):
        """Replace (or, with values None, delete) one attribute of dn."""
        if values is None:
            change = f"changetype: modify\ndelete: {name}\n"
        else:
            if isinstance(values, (str, bytes, int)):
                values = [values]
            change = f"changetype: modify\nreplace: {name}\n" + "".join(
                ldif_line(name, str(v) if isinstance(v, int) else v) + "\n"
                for v in values)
        self.ldapmodify(ldif_line("dn", dn) + "\n" + change)

    def delete(self, dn):
        """Delete dn and everything under it."""
        self._run(self._client("ldapdelete", "-r", dn), "ldapdelete")

    def user_dn(self, uid):
        return f"uid={escape_dn_value(uid)},{self.people_dn}"

    def add_user(self, uid, password=None, verifier=None, apop_secret=None,
                 structural="inetOrgPerson", extra=None):
        """Add uid=UID,ou=people,...: a mailroomUser on an inetOrgPerson
        (cn and sn = uid) or on an account; password becomes an {SSHA}
        userPassword, verifier (mailroomVerifier) and apop_secret
        (mailroomApopSecret, sealed text) are written as given.
        Returns the DN."""
        attrs = {"objectClass": [structural, "mailroomUser"], "uid": uid}
        if structural == "inetOrgPerson":
            attrs.update({"cn": uid, "sn": uid})
        attrs["userPassword"] = ssha(password) if password is not None \
            else None
        attrs["mailroomVerifier"] = verifier
        attrs["mailroomApopSecret"] = apop_secret
        attrs.update(extra or {})
        return self.add_entry(self.user_dn(uid), attrs)

    def add_account(self, user_dn, account_id, host, login, secret,
                    port=None, tls=None, extra=None):
        """Add mailroomAccountId=ID under user_dn; secret is sealed text.
        Returns the DN."""
        attrs = {"objectClass": "mailroomAccount",
                 "mailroomAccountId": account_id, "mailroomHost": host,
                 "mailroomLogin": login, "mailroomSecret": secret,
                 "mailroomPort": port, "mailroomTls": tls}
        attrs.update(extra or {})
        return self.add_entry(f"mailroomAccountId={account_id},{user_dn}",
                              attrs)

    # --------------------------------------------------------------- reading

    def search(self, base=None, filt="(objectClass=*)", attrs=(),
               scope="sub", bind=None):
        """Entries as [(dn, {name: [values]})], bound as the root DN, or
        as bind=(dn, password), or anonymously with bind=()."""
        if bind is None:
            argv = self._client("ldapsearch")
        else:
            argv = ["ldapsearch", "-x", "-H", self.uri, "-o", "nettimeout=5"]
            pw_file = None
            if bind:
                pw_file = self.dir / "bind.pw"
                pw_file.write_text(bind[1])
                os.chmod(pw_file, 0o600)
                argv += ["-D", bind[0], "-y", str(pw_file)]
        argv += ["-LLL", "-o", "ldif-wrap=no", "-s", scope, "-b",
                 self.suffix if base is None else base, filt, *attrs]
        return parse_ldif(self._run(argv, "ldapsearch"))

    def bind_code(self, dn, password):
        """The LDAP result code of a simple bind as dn (0: success)."""
        pw_file = self.dir / "bind.pw"
        pw_file.write_text(password)
        os.chmod(pw_file, 0o600)
        r = subprocess.run(
            ["ldapwhoami", "-x", "-H", self.uri, "-D", dn, "-y",
             str(pw_file), "-o", "nettimeout=5"],
            capture_output=True, text=True, timeout=10)
        return r.returncode


def parse_ldif(text):
    """[(dn, {name: [values]})] from ldapsearch -LLL -o ldif-wrap=no."""
    entries = []
    for block in text.strip().split("\n\n"):
        if not block.strip():
            continue
        dn, attrs = None, {}
        for line in block.splitlines():
            if line.startswith("#"):
                continue
            name, sep, value = line.partition(":")
            if value.startswith(": "):
                value = base64.b64decode(value[2:]).decode(errors="replace")
            else:
                value = value[1:] if value.startswith(" ") else value
            if name == "dn":
                dn = value
            else:
                attrs.setdefault(name, []).append(value)
        entries.append((dn, attrs))
    return entries


# ---------------------------------------------------------------- fixture

@pytest.fixture
def slapd(tmp_path):
    """Factory: slapd(**kw) -> Slapd, started; every one is stopped at
    teardown.  See Slapd."""
    yield from server_factory(Slapd, tmp_path)
