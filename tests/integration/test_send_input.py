"""`mailroom send` with bad input: exit codes, messages, reject file.

Rows refused before sending (invalid address, wrong column count, invalid
UTF-8, duplicates) go to the reject file and `rejected` records while the
other rows are delivered (exit 0).  Whole-run errors exit with the
documented code, print `mailroom send: ...` on stderr and send nothing:
unknown placeholder, empty list, no `email` column, template without From
(65); missing or unreadable files (66); bad configuration (78); an output
file that cannot be created (73); bad usage (64).  --help prints usage on
stdout and exits 0.

Unreadable files: the tests run as root, whom chmod 000 does not stop, so
the unreadable-file test runs mailroom as `nobody` (setpriv) on a 0000
file in a directory nobody can enter and write; a second test passes a
directory where a file is expected (open succeeds, read fails EISDIR).
"""
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest

from peers import (TEMPLATE, assert_accounting_sane, read_rejects,
                   recipients, write_list)

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_CANTCREAT, EX_CONFIG = \
    0, 64, 65, 66, 73, 78


def _assert_error(r, code, *needles):
    """Exit code, one `mailroom send: ` error on stderr naming needles."""
    assert r.rc == code, r
    assert re.search(r"^mailroom send: ", r.stderr, re.M), r
    for n in needles:
        assert re.search(n, r.stderr, re.I), (n, r.stderr)


@pytest.fixture
def peer(aio_peer):
    """A healthy peer: tests route every domain to it."""
    return aio_peer(host="127.0.0.2")


def _nothing_sent(peer):
    assert peer.connections == 0 and peer.messages == []


# ------------------------------------------------------------- bad rows

def test_invalid_addresses_rejected_others_delivered(send, peer):
    rows = [["good1@x.test", "G1"],          # line 2
            ["not-an-address", "N3"],        # 3
            ["two@@at.test", "N4"],          # 4
            ["good2@x.test", "G2"],          # 5
            ["", "N6"],                      # 6
            ["space in@x.test", "N7"]]       # 7
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address})
    assert r.rc == EX_OK, r
    # Default reject file: the list path + .rejects.csv.
    assert r.reject_path == pathlib.Path(str(r.list_path) + ".rejects.csv")
    rejects = {int(x["line"]): x for x in r.rejects}
    assert sorted(rejects) == [3, 4, 6, 7]
    assert rejects[3]["row"] == "not-an-address,N3"
    assert rejects[4]["row"] == "two@@at.test,N4"
    assert rejects[6]["row"] == ",N6"
    assert all(x["reason"] for x in rejects.values())
    rejected = {int(x["line"]): x for x in r.records("rejected")}
    assert sorted(rejected) == [3, 4, 6, 7]
    assert all(x["reply"] for x in rejected.values())
    assert_accounting_sane(r, recipients=["good1@x.test", "good2@x.test"])
    assert sorted(m.rcpt_tos[0] for m in peer.messages) == \
        ["good1@x.test", "good2@x.test"]
    assert r.count("recipients") == 2 and r.count("delivered") == 2
    assert r.count("rejected") == 4 and r.count("duplicates") == 0


def test_wrong_column_count_rejected(send, peer):
    list_bytes = (b"email,name\n"
                  b"ok@x.test,Ok\n"              # 2
                  b"more@x.test,M,extra\n"       # 3
                  b"fewer@x.test\n"              # 4
                  b"ok2@x.test,Ok2\n")           # 5
    r = send(template=TEMPLATE, list_bytes=list_bytes,
             routes={"*": peer.address})
    assert r.rc == EX_OK, r
    rejects = {int(x["line"]): x for x in r.rejects}
    assert sorted(rejects) == [3, 4]
    assert rejects[3]["row"] == "more@x.test,M,extra"
    assert rejects[4]["row"] == "fewer@x.test"
    for x in rejects.values():
        assert re.search(r"column|field", x["reason"], re.I), x
    assert sorted(m.rcpt_tos[0] for m in peer.messages) == \
        ["ok2@x.test", "ok@x.test"]
    assert r.count("rejected") == 2


def test_invalid_utf8_in_a_field_rejected(send, peer):
    list_bytes = (b"email,name\n"
                  b"ok@x.test,Zo\xc3\xab\n"       # 2: valid UTF-8
                  b"bad@x.test,caf\xe9\n"         # 3: Latin-1 byte
                  b"ok2@x.test,Ok\n")             # 4
    r = send(template=TEMPLATE, list_bytes=list_bytes,
             routes={"*": peer.address})
    assert r.rc == EX_OK, r
    [rej] = r.rejects
    assert rej["line"] == "3"
    assert re.search(r"utf-?8", rej["reason"], re.I), rej
    [rec] = r.records("rejected")
    assert rec["line"] == "3"
    assert sorted(m.rcpt_tos[0] for m in peer.messages) == \
        ["ok2@x.test", "ok@x.test"]


def test_duplicates_sent_once_and_reported(send, peer, tmp_path):
    rows = [["a@x.test", "A"],       # 2
            ["b@x.test", "B"],       # 3
            ["a@x.test", "A again"],  # 4
            ["c@x.test", "C"],       # 5
            ["a@x.test", "A third"]]  # 6
    reject_file = tmp_path / "my-rejects.csv"
    r = send(template=TEMPLATE, rows=rows, routes={"*": peer.address},
             reject_file=reject_file)
    assert r.rc == EX_OK, r
    by = peer.received_by_rcpt()
    assert {k: len(v) for k, v in by.items()} == \
        {"a@x.test": 1, "b@x.test": 1, "c@x.test": 1}
    # The first occurrence is the one sent.
    assert by["a@x.test"][0].message()["Subject"] == "Hello A"
    rejects = read_rejects(reject_file)
    assert [(x["line"], x["reason"]) for x in rejects] == \
        [("4", "duplicate of line 2"), ("6", "duplicate of line 2")]
    assert rejects[0]["row"] == "a@x.test,A again"
    assert r.count("duplicates") == 2
    assert r.count("rejected") == 2
    assert r.count("recipients") == 3
    assert r.count("delivered") == 3
    assert_accounting_sane(r, recipients=["a@x.test", "b@x.test",
                                          "c@x.test"])
    assert sorted(x["line"] for x in r.records("rejected")) == ["4", "6"]


# ------------------------------------------------------------- exit 65

@pytest.mark.parametrize("where,line", [("header", 4), ("body", 7)])
def test_placeholder_without_column_exits_65(send, peer, where, line):
    lines = ["From: Campaign <news@sender.test>",     # 1
             "To: {{email}}",                          # 2
             "Subject: Hello {{name}}",                # 3
             "X-Campaign: {{campaign}}",               # 4
             "",                                       # 5
             "Hi {{name}},",                           # 6
             "code {{code}}"]                          # 7
    if where == "header":
        lines[6] = "code none"
        missing = "campaign"
    else:
        lines[3] = "X-Campaign: spring"
        missing = "code"
    r = send(template="\n".join(lines) + "\n", rows=recipients(3),
             routes={"*": peer.address})
    _assert_error(r, EX_DATAERR, re.escape(missing),
                  rf"(line\s*|:){line}\b")
    _nothing_sent(peer)


def test_list_with_only_a_header_exits_65(send, peer):
    r = send(template=TEMPLATE, list_bytes=b"email,name\n",
             routes={"*": peer.address})
    _assert_error(r, EX_DATAERR)
    _nothing_sent(peer)


def test_zero_byte_list_exits_65(send, peer):
    r = send(template=TEMPLATE, list_bytes=b"", routes={"*": peer.address})
    _assert_error(r, EX_DATAERR)
    _nothing_sent(peer)


def test_list_where_every_row_is_invalid_exits_65(send, peer):
    r = send(template=TEMPLATE, rows=[["nope", "N"], ["also nope", "M"]],
             routes={"*": peer.address})
    _assert_error(r, EX_DATAERR)
    _nothing_sent(peer)


def test_list_without_email_column_exits_65(send, peer):
    r = send(template=TEMPLATE, header=["mail", "name"],
             rows=[["a@x.test", "A"]], routes={"*": peer.address})
    _assert_error(r, EX_DATAERR, r"\bemail\b")
    _nothing_sent(peer)


def test_template_without_from_exits_65(send, peer):
    template = "To: {{email}}\nSubject: no sender\n\nbody\n"
    r = send(template=template, rows=recipients(1),
             routes={"*": peer.address})
    _assert_error(r, EX_DATAERR, r"\bFrom\b")
    _nothing_sent(peer)


# ------------------------------------------------------------- exit 66

def test_missing_template_exits_66(send, peer, tmp_path):
    missing = tmp_path / "no-such-template.eml"
    r = send(template_path=missing, rows=recipients(1),
             routes={"*": peer.address})
    _assert_error(r, EX_NOINPUT, re.escape(missing.name))
    _nothing_sent(peer)


def test_missing_list_exits_66(send, peer, tmp_path):
    missing = tmp_path / "no-such-list.csv"
    r = send(template=TEMPLATE, list_path=missing,
             routes={"*": peer.address})
    _assert_error(r, EX_NOINPUT, re.escape(missing.name))
    _nothing_sent(peer)


@pytest.fixture
def nobody_dir():
    """A directory that `nobody` can enter and write (tmp_path is 0700
    root); removed afterwards."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-nobody-"))
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("which", ["template", "list"])
def test_unreadable_file_exits_66(send, peer, nobody_dir, which):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    template = nobody_dir / "template.eml"
    template.write_text(TEMPLATE)
    lst = nobody_dir / "list.csv"
    write_list(lst, ["email", "name"], recipients(1))
    for p in (template, lst):
        os.chmod(p, 0o644)
    unreadable = template if which == "template" else lst
    os.chmod(unreadable, 0)
    r = send(workdir=nobody_dir, template_path=template, list_path=lst,
             routes={"*": peer.address}, user="nobody")
    _assert_error(r, EX_NOINPUT, re.escape(unreadable.name))
    _nothing_sent(peer)


@pytest.mark.parametrize("which", ["template", "list"])
def test_directory_instead_of_file_exits_66(send, peer, tmp_path, which):
    d = tmp_path / f"a-directory-{which}"
    d.mkdir()
    kw = {"template_path": d} if which == "template" else {"list_path": d}
    if which == "template":
        kw["rows"] = recipients(1)
    else:
        kw["template"] = TEMPLATE
    r = send(routes={"*": peer.address}, **kw)
    _assert_error(r, EX_NOINPUT, re.escape(d.name))
    _nothing_sent(peer)


# ------------------------------------------------------------- exit 78

def test_unknown_config_key_exits_78(send, peer):
    r = send(template=TEMPLATE, rows=recipients(1),
             routes={"*": peer.address}, opts={"smtp.nonsense": "1"})
    _assert_error(r, EX_CONFIG, r"smtp\.nonsense")
    _nothing_sent(peer)


def test_bad_config_value_exits_78(send, peer):
    r = send(template=TEMPLATE, rows=recipients(1),
             routes={"*": peer.address}, opts={"smtp.port": "abc"})
    _assert_error(r, EX_CONFIG, r"smtp\.port")
    _nothing_sent(peer)


def test_unknown_key_in_config_file_exits_78_with_file_and_line(
        send, peer, tmp_path):
    conf = tmp_path / "mailroom.conf"
    conf.write_text("[smtp]\nport = 2525\nbogus_key = 1\n")
    r = send(template=TEMPLATE, rows=recipients(1),
             routes={"*": peer.address},
             extra_args=["--config", str(conf)])
    _assert_error(r, EX_CONFIG, r"bogus_key", re.escape(f"{conf.name}:3"))
    _nothing_sent(peer)


# ------------------------------------------------------------- exit 73

def test_accounting_file_that_cannot_be_created_exits_73(send, peer,
                                                        tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    r = send(template=TEMPLATE, rows=recipients(1),
             routes={"*": peer.address},
             accounting=blocker / "accounting.csv")
    _assert_error(r, EX_CANTCREAT, r"accounting\.csv")
    _nothing_sent(peer)


# ------------------------------------------------------------- usage

def test_help_prints_usage_on_stdout(mailroom):
    p = subprocess.run([mailroom, "send", "--help"], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == EX_OK, p
    assert p.stdout.startswith("usage: mailroom send")
    for opt in ("--template", "--list", "--config", "-o", "--route",
                "--resolver", "--accounting", "--accounting-format",
                "--reject-file", "--forensics-dir", "--from"):
        assert opt in p.stdout, opt


def test_unknown_option_exits_64(send, peer):
    r = send(template=TEMPLATE, rows=recipients(1),
             routes={"*": peer.address}, extra_args=["--bogus-option"])
    _assert_error(r, EX_USAGE, r"--bogus-option")
    _nothing_sent(peer)


def test_missing_required_option_exits_64(mailroom, tmp_path):
    (tmp_path / "list.csv").write_text("email\na@x.test\n")
    p = subprocess.run([mailroom, "send", "--list",
                        str(tmp_path / "list.csv")],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == EX_USAGE, p
    assert re.search(r"^mailroom send: ", p.stderr, re.M), p.stderr
    assert "template" in p.stderr, p.stderr


def test_bad_accounting_format_is_refused(send, peer):
    # The contract does not say whether a bad value of this option is bad
    # usage (64) or bad configuration (78, send.accounting_format): both
    # are accepted; sending anything is not.
    r = send(template=TEMPLATE, rows=recipients(1),
             routes={"*": peer.address}, accounting_format="xml")
    assert r.rc in (EX_USAGE, EX_CONFIG), r
    assert "mailroom send: " in r.stderr
    _nothing_sent(peer)
