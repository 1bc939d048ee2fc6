"""`mailroom send --store/--resume`: campaigns that survive crashes.

The crash test of issue 3: a 200,000-recipient campaign killed with SIGKILL
at five random moments (during preparation and recovery, and in the middle
of delivery), resumed each time, then resumed to completion; nobody is
skipped, the only duplicates are recipients the resumes reported in flight,
and the accounting file holds exactly one final record per recipient.
Then: deferred recipients keep their visit counts across a crash; a
complete campaign is never sent again; SIGINT stops a recorded send with
75 and --resume finishes it without sending anyone twice.

The random seed of the crash test is printed (`crash test seed: N`, shown
with -s or on failure); MAILROOM_CRASH_SEED=N runs the same moments again.
"""
import collections
import csv
import os
import random
import signal
import time

import pytest

from peers import (ACCOUNTING_FIELDS, FINAL_TYPES, INFLIGHT_REPLY,
                   inflight_at_crash, is_inflight_record, read_accounting,
                   read_accounting_partial, write_list)

HOSTNAME_OPT = ["-o", "general.hostname=mailroom.test"]


def _template(size=1024):
    """A personalized template (every message differs: one recipient per
    transaction) of about size bytes."""
    head = ("From: Campaign <news@sender.test>\n"
            "To: {{name}} <{{email}}>\n"
            "Subject: Hello {{name}}\n"
            "\n"
            "Dear {{name}},\n")
    line = "this line pads the campaign text to a realistic size.\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


def _record_args(store, name, template, lst, route, acct, *opts):
    args = ["send", "--store", store, "--campaign", name,
            "--template", template, "--list", lst, "--route", route,
            "--accounting", acct, "--no-progress"] + HOSTNAME_OPT
    for o in opts:
        args += ["-o", o]
    return [str(a) for a in args]


def _resume_args(store, name, *extra):
    return ["send", "--store", str(store), "--resume", name,
            "--no-progress"] + list(extra)


def _summary(stdout, key):
    for line in stdout.splitlines():
        if line.startswith(key + ":"):
            return int(line.split(":", 1)[1].split()[0])
    raise AssertionError(f"no '{key}:' in\n{stdout[-2000:]}")


def _scan_accounting(path):
    """Stream a big accounting file: ({recipient: [types in order]},
    [in-flight records]); every row checked to have every field."""
    types = collections.defaultdict(list)
    inflight = []
    with open(path, newline="", encoding="utf-8",
              errors="surrogateescape") as f:
        rows = csv.reader(f)
        assert next(rows) == ACCOUNTING_FIELDS
        for n, row in enumerate(rows, 2):
            assert len(row) == len(ACCOUNTING_FIELDS), \
                f"{path} line {n} is torn or merged: {row}"
            rec = dict(zip(ACCOUNTING_FIELDS, row))
            types[rec["recipient"].lower()].append(rec["type"])
            if is_inflight_record(rec):
                inflight.append(rec)
    return types, inflight


# ------------------------------------------------------------ the crash test

CRASH_RECIPIENTS = 200_000
CRASH_DOMAINS = 100
CRASH_KILLS = 5


def test_crash_test_kill9_five_times_then_resume_to_completion(
        tmp_path, counting_sink, mailroom_bg):
    seed = os.environ.get("MAILROOM_CRASH_SEED")
    seed = int(seed) if seed else random.SystemRandom().randrange(2 ** 32)
    print(f"crash test seed: {seed}")
    rng = random.Random(seed)
    t_start = time.monotonic()

    n = CRASH_RECIPIENTS
    emails = [f"u{i:06d}@d{i % CRASH_DOMAINS:03d}.test" for i in range(n)]
    lst = write_list(tmp_path / "list.csv", ["email", "name"],
                     [[e, f"User {i:06d}"] for i, e in enumerate(emails)])
    tpl = tmp_path / "template.eml"
    tpl.write_text(_template(1024))
    store, acct = tmp_path / "store.db", tmp_path / "accounting.csv"
    sink = counting_sink(host="127.0.0.11")
    first = _record_args(store, "crash", tpl, lst, f"*={sink.address}", acct,
                         "recovery.snapshot_interval=300ms")
    resume = _resume_args(store, "crash")

    # The first kill is always in the middle of delivery: an early kill
    # of the first run may come before the campaign is recorded at all,
    # and then there is nothing to resume.  The other four: two early
    # (0-300 ms after start: list loading, recovery, the first
    # transactions) and two in the middle, in a random order.
    modes = ["mid"] + rng.sample(["early", "early", "mid", "mid"], 4)
    runs = []
    for k, mode in enumerate(modes):
        run = mailroom_bg(first if k == 0 else resume, name=f"run{k + 1}")
        runs.append(run)
        if mode == "early":
            wait = rng.uniform(0.0, 0.3)
            time.sleep(wait)            # the random moment itself
            moment = f"{wait * 1000:.0f} ms after start"
        else:
            total, counts = sink.snapshot()
            left = n - len(counts)
            target = total + max(1, int(left * rng.uniform(0.05, 0.35)))
            assert run.wait_for(lambda: sink.total >= target, timeout=90,
                                interval=0.002), \
                f"sink never passed {target} during {run.name}\n{run}"
            moment = f"sink total passed {target}"
        rc = run.kill()
        assert rc == -signal.SIGKILL, \
            f"{run.name} ended (rc {rc}) before its kill ({moment})\n{run}"
        print(f"kill {k + 1} ({mode}, {moment}): sink total {sink.total}, "
              f"in-flight-at-crash printed {inflight_at_crash(run.stdout)}")

    final = mailroom_bg(resume, name="final")
    runs.append(final)
    assert final.wait(timeout=180) == 0, final
    assert _summary(final.stdout, "delivered") == n, final
    assert _summary(final.stdout, "bounced") == 0, final

    printed = [v for r in runs for v in inflight_at_crash(r.stdout)]
    total, counts = sink.snapshot()
    types, inflight = _scan_accounting(acct)

    # Nobody skipped, nobody unknown.
    missing = [e for e in emails if e not in counts]
    assert not missing, f"{len(missing)} never received: {missing[:5]}"
    assert len(counts) == n, sorted(set(counts) - set(emails))[:5]

    # Each in-flight recipient is reported (the count, printed first) and
    # named (a record).  A resume killed between the two leaves them in
    # flight, so the next resume reports them again: records never
    # outnumber the reports.
    assert 0 < len(inflight) <= sum(printed), (len(inflight), printed)
    for rec in inflight:
        assert rec["dsn"] == "4.4.7", rec
        assert rec["reply"].startswith(INFLIGHT_REPLY), rec
    reported = collections.Counter(r["recipient"].lower() for r in inflight)

    # Only recipients reported in flight were sent again, and no more often
    # than they were reported.
    dups = {e: c for e, c in counts.items() if c > 1}
    unreported = {e: (c, reported[e]) for e, c in dups.items()
                  if c - 1 > reported[e]}
    assert not unreported, (
        f"{len(unreported)} recipients received more often than reported "
        f"in flight (received, reported): "
        f"{sorted(unreported.items())[:10]}")
    assert total == n + sum(c - 1 for c in dups.values())

    # Exactly one final record each, a delivered one, and nothing after it.
    bad = {}
    for e in emails:
        t = types.get(e, [])
        finals = [x for x in t if x in FINAL_TYPES]
        if finals != ["delivered"] or t[-1] != "delivered":
            bad[e] = t
    assert not bad, (f"{len(bad)} recipients without exactly one final "
                     f"delivered record last: {sorted(bad.items())[:10]}")
    assert set(types) == set(emails)
    print(f"crash test: {n} recipients, {sum(printed)} reported in flight "
          f"({printed}), {len(dups)} received twice or more, sink total "
          f"{total}, in {time.monotonic() - t_start:.1f} s")


# ---------------------------------------------- visit counts survive a crash

GREYLISTED = "451 4.7.1 greylisted, try again later"


@pytest.mark.parametrize("snapshot_interval", ["300ms", "1h"],
                         ids=["from-snapshot", "from-journal"])
def test_deferred_recipients_keep_their_visit_counts_across_a_crash(
        tmp_path, rcpt_scripted_peer, mailroom_bg, snapshot_interval):
    # 1h: after the first snapshot (at start) the deferrals are only in
    # the journal; 300ms: in the snapshot's recipient rows as well.
    good = [f"g{i:02d}@d{i % 2}.test" for i in range(20)]
    bad = ["grey1@d0.test", "grey2@d1.test"]
    everyone = good + bad
    peer = rcpt_scripted_peer(host="127.0.0.12",
                              rcpt_replies={b: GREYLISTED for b in bad})
    lst = write_list(tmp_path / "list.csv", ["email", "name"],
                     [[e, e.split("@")[0]] for e in everyone])
    tpl = tmp_path / "template.eml"
    tpl.write_text(_template(300))
    store, acct = tmp_path / "store.db", tmp_path / "accounting.csv"
    run = mailroom_bg(_record_args(
        store, "grey", tpl, lst, f"*={peer.address}", acct,
        "queue.max_attempts=4", "queue.retry_base=300ms",
        f"recovery.snapshot_interval={snapshot_interval}"))

    def deferrals():
        recs = read_accounting_partial(acct)
        return {b: sum(1 for r in recs if r["recipient"] == b and
                       r["type"] == "deferred") for b in bad}

    assert run.wait_for(lambda: min(deferrals().values()) >= 2, timeout=30,
                        interval=0.02), run
    assert run.kill() == -signal.SIGKILL, run
    at_kill = deferrals()

    final = mailroom_bg(_resume_args(store, "grey"), name="resume")
    assert final.wait(timeout=60) == 0, final
    assert len(inflight_at_crash(final.stdout)) == 1, final
    assert _summary(final.stdout, "delivered") == len(good), final
    assert _summary(final.stdout, "bounced") == len(bad), final

    recs = read_accounting(acct)
    for b in bad:
        mine = [r for r in recs if r["recipient"] == b]
        finals = [r for r in mine if r["type"] in FINAL_TYPES]
        assert len(finals) == 1 and mine[-1] is finals[0], mine
        assert finals[0]["type"] == "bounced", finals
        assert finals[0]["attempt"] == "4", finals
        assert "retry limit reached" in finals[0]["reply"], finals
        inflight = [r for r in mine if is_inflight_record(r)]
        normal = [int(r["attempt"]) for r in mine
                  if r["type"] == "deferred" and not is_inflight_record(r)]
        assert len(inflight) <= 1, mine
        assert len(set(normal)) == len(normal), mine
        # Four visits in all: a deferred record for each, except that a
        # visit whose outcome the crash hid has its in-flight record.
        visits = set(normal) | {int(r["attempt"]) for r in inflight}
        assert visits == {1, 2, 3, 4}, (at_kill, mine)
        if not inflight:
            assert len(normal) == 4, mine
        # The peer never saw a fifth RCPT: the count was not reset.
        seen = peer.rcpts_seen().get(b, 0)
        assert seen <= 4, (b, seen, at_kill)
        if not inflight:
            assert seen == 4, (b, seen)
    for g in good:
        mine = [r for r in recs if r["recipient"] == g]
        assert [r["type"] for r in mine if r["type"] in FINAL_TYPES] == \
            ["delivered"], mine


# ------------------------------------------- a complete campaign stays done

def test_complete_campaign_is_never_sent_again(tmp_path, counting_sink,
                                               mailroom_bg):
    sink = counting_sink(host="127.0.0.13")
    emails = [f"c{i:03d}@d{i % 3}.test" for i in range(100)]
    lst = write_list(tmp_path / "list.csv", ["email", "name"],
                     [[e, "N"] for e in emails])
    tpl = tmp_path / "template.eml"
    tpl.write_text(_template(500))
    store, acct = tmp_path / "store.db", tmp_path / "accounting.csv"
    run = mailroom_bg(_record_args(store, "done", tpl, lst,
                                   f"*={sink.address}", acct))
    assert run.wait(timeout=60) == 0, run
    assert sink.total == 100 and set(sink.counts) == set(emails)
    acct_before = acct.read_bytes()

    again = mailroom_bg(_resume_args(store, "done"), name="again")
    assert again.wait(timeout=30) == 65, again
    assert "campaign done is complete" in again.stderr, again
    assert "never sent again" in again.stderr, again
    assert sink.total == 100, "a complete campaign was sent again"
    assert acct.read_bytes() == acct_before
    assert "in-flight-at-crash" not in again.stdout, again


# ------------------------------------------------------------------ SIGINT

def test_sigint_exits_75_and_resume_sends_nobody_twice(tmp_path,
                                                       counting_sink,
                                                       mailroom_bg):
    # A slow sink (10 ms per message) makes the run last long enough to be
    # interrupted in the middle.
    sink = counting_sink(host="127.0.0.14", delay=0.01)
    n = 3000
    emails = [f"s{i:04d}@d{i % 10}.test" for i in range(n)]
    lst = write_list(tmp_path / "list.csv", ["email", "name"],
                     [[e, "N"] for e in emails])
    tpl = tmp_path / "template.eml"
    tpl.write_text(_template(500))
    store, acct = tmp_path / "store.db", tmp_path / "accounting.csv"
    run = mailroom_bg(_record_args(store, "intr", tpl, lst,
                                   f"*={sink.address}", acct))
    assert run.wait_for(lambda: sink.total >= 300, timeout=30), run
    run.signal(signal.SIGINT)
    assert run.wait(timeout=30) == 75, run
    assert "interrupted" in run.stderr, run
    assert "--resume intr" in run.stderr, run
    before = sink.total
    assert before < n, "the run was not interrupted in the middle"

    sink.delay = 0.0
    final = mailroom_bg(_resume_args(store, "intr"), name="resume")
    assert final.wait(timeout=60) == 0, final
    assert inflight_at_crash(final.stdout) == [0], final
    assert _summary(final.stdout, "delivered") == n, final
    total, counts = sink.snapshot()
    twice = sorted(e for e, c in counts.items() if c > 1)
    assert not twice, f"sent twice after SIGINT: {twice[:10]}"
    assert total == n and set(counts) == set(emails)
    types, inflight = _scan_accounting(acct)
    assert not inflight
    assert all(types[e] == ["delivered"] for e in emails), \
        [(e, types[e]) for e in emails if types[e] != ["delivered"]][:5]
