"""Self-test of the slapd fixture (slapd.py) and of mailroom's LDAP schema
(docs/ldap/mailroom.ldif), without mailroom.

Checks, with OpenLDAP's own clients, that the throwaway slapd starts and
stops by PID, that the schema loads and refuses what it should, that the
ACLs show the service account the sealed values and nobody the
userPassword, what binds answer (which the registry's bind check relies
on), and that the unique overlay keeps account ids unique.  What was
observed is written down in slapd.py's docstring.  Needs root and slapd
2.5; no mailroom binary.
"""
import os
import socket
import time

import pytest

from slapd import LdapError, Slapd, ldif_entry, parse_ldif
from slapd import slapd  # noqa: F401  (the fixture)

LDAP_SUCCESS = 0
LDAP_CONSTRAINT_VIOLATION = 19
LDAP_INVALID_SYNTAX = 21
LDAP_INVALID_CREDENTIALS = 49
LDAP_UNWILLING_TO_PERFORM = 53
LDAP_OBJECT_CLASS_VIOLATION = 65


def test_starts_answers_and_stops_by_pid(slapd):
    t0 = time.monotonic()
    s = slapd()
    assert time.monotonic() - t0 < 5
    root = s.search(base="", scope="base", attrs=["namingContexts"],
                    bind=())
    assert root[0][1]["namingContexts"] == [s.suffix]
    pid = s.proc.pid
    assert os.path.exists(f"/proc/{pid}")
    t0 = time.monotonic()
    s.stop(cleanup=False)
    assert time.monotonic() - t0 < 5
    assert s.proc is None
    with pytest.raises(OSError):
        socket.create_connection((s.host, s.port), timeout=1).close()
    # The same directory comes back on the same port.
    port = s.port
    s.start()
    assert s.port == port
    assert s.search(base=s.service_dn, scope="base")[0][0] == s.service_dn


def test_schema_is_loaded(slapd):
    s = slapd()
    sub = s.search(base="cn=subschema", scope="base",
                   attrs=["attributeTypes", "objectClasses"],
                   filt="(objectClass=subschema)", bind=())
    types = " ".join(sub[0][1]["attributeTypes"])
    classes = " ".join(sub[0][1]["objectClasses"])
    for name in ["mailroomVerifier", "mailroomApopSecret",
                 "mailroomAccountId", "mailroomHost", "mailroomPort",
                 "mailroomTls", "mailroomLogin", "mailroomSecret"]:
        assert f"NAME '{name}'" in types
    assert "1.3.6.1.4.1.32473.1.2.1 NAME 'mailroomUser'" in classes
    assert "1.3.6.1.4.1.32473.1.2.2 NAME 'mailroomAccount'" in classes


def test_user_and_accounts_as_each_reader_sees_them(slapd):
    s = slapd()
    dn = s.add_user("alice", password="pw1", verifier="$pbkdf2-sha256$x",
                    apop_secret="v1:00000000:c2VhbGVk")
    s.add_account(dn, 1, "pop.a.test", "alice@a.test", "v1:00000000:YQ==",
                  port=995, tls="pop3s")
    s.add_account(dn, 2, "pop.b.test", "alice", "v1:00000000:Yg==")
    # The service account reads the sealed values and the verifier ...
    svc = (s.service_dn, s.service_pw)
    (edn, user), = s.search(filt="(uid=alice)", bind=svc)
    assert edn == dn
    assert user["mailroomApopSecret"] == ["v1:00000000:c2VhbGVk"]
    assert user["mailroomVerifier"] == ["$pbkdf2-sha256$x"]
    assert "userPassword" not in user
    accounts = s.search(base=dn, scope="one",
                        filt="(objectClass=mailroomAccount)", bind=svc)
    assert sorted(a["mailroomAccountId"][0] for _, a in accounts) == \
        ["1", "2"]
    assert all("mailroomSecret" in a for _, a in accounts)
    # ... anonymous reads neither, and the root DN reads userPassword.
    (_, anon), = s.search(filt="(uid=alice)", bind=())
    assert not {"mailroomApopSecret", "mailroomVerifier",
                "userPassword"} & set(anon)
    accounts = s.search(base=dn, scope="one", bind=())
    assert all("mailroomSecret" not in a for _, a in accounts)
    (_, root), = s.search(filt="(uid=alice)")
    assert root["userPassword"][0].startswith("{SSHA}")
    # uid matches without regard to case.
    assert [d for d, _ in s.search(filt="(uid=ALICE)", bind=svc)] == [dn]


def test_binds(slapd):
    s = slapd()
    dn = s.add_user("bob", password="right")
    nopw = s.add_user("carol", structural="account")
    assert s.bind_code(dn, "right") == LDAP_SUCCESS
    assert s.bind_code(dn, "wrong") == LDAP_INVALID_CREDENTIALS
    # An empty password is an unauthenticated bind: refused.
    assert s.bind_code(dn, "") == LDAP_UNWILLING_TO_PERFORM
    assert s.bind_code(nopw, "anything") == LDAP_INVALID_CREDENTIALS
    assert s.bind_code("uid=nobody," + s.people_dn, "x") == \
        LDAP_INVALID_CREDENTIALS
    assert s.bind_code(s.service_dn, s.service_pw) == LDAP_SUCCESS
    assert s.bind_code(s.service_dn, "not-it") == LDAP_INVALID_CREDENTIALS


def test_schema_refuses_bad_entries(slapd):
    s = slapd()
    dn = s.add_user("dave")
    with pytest.raises(LdapError) as e:
        s.add_account(dn, 1, "h.test", "dave", "v1:x:y", port="abc")
    assert e.value.code == LDAP_INVALID_SYNTAX
    with pytest.raises(LdapError) as e:
        s.add_entry(f"mailroomAccountId=2,{dn}", {
            "objectClass": "mailroomAccount", "mailroomAccountId": 2,
            "mailroomHost": "h.test", "mailroomLogin": "dave"})
    assert e.value.code == LDAP_OBJECT_CLASS_VIOLATION
    with pytest.raises(LdapError) as e:
        s.add_entry("cn=x," + s.people_dn, {
            "objectClass": ["organizationalRole", "mailroomUser"],
            "cn": "x"})
    assert e.value.code == LDAP_OBJECT_CLASS_VIOLATION  # no uid
    with pytest.raises(LdapError) as e:
        s.replace(dn, "mailroomApopSecret", ["a", "b"])
    assert e.value.code == LDAP_CONSTRAINT_VIOLATION  # SINGLE-VALUE


def test_account_ids_are_unique_across_users(slapd):
    s = slapd()
    a = s.add_user("erin")
    b = s.add_user("frank")
    s.add_account(a, 7, "h.test", "erin", "v1:x:y")
    with pytest.raises(LdapError) as e:
        s.add_account(b, 7, "h.test", "frank", "v1:x:y")
    assert e.value.code == LDAP_CONSTRAINT_VIOLATION
    s.add_account(b, 8, "h.test", "frank", "v1:x:y")


def test_ldif_helpers_round_trip_awkward_values(slapd):
    s = slapd()
    for uid in ["a,b", " lead", "x*)(uid=*", "h\u00e9", "#hash", "back\\"]:
        dn = s.add_user(uid, extra={"description": ":colon<"})
        (edn, attrs), = s.search(base=dn, scope="base")
        assert attrs["uid"] == [uid]
        assert attrs["description"] == [":colon<"]
    assert ldif_entry("cn=x", {"a": ["1", 2], "b": None}) == \
        "dn: cn=x\na: 1\na: 2\n"
    assert parse_ldif("dn: cn=x\nmail:: aMOp\n") == \
        [("cn=x", {"mail": ["h\u00e9"]})]


def test_fixture_needs_root_and_cleans_up(tmp_path):
    s = Slapd(tmp_path)
    directory = s.dir
    s.stop()
    assert not directory.exists()
    assert s.log_path.parent == tmp_path
