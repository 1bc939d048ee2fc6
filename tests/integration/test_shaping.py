"""Traffic shaping per destination (SPEC D7, D3 grouping by MX): one
campaign over three receivers with different characters, each an aiosmtpd
process of its own (tests/integration/receiver.py):

  fast      accepts at once;
  slow      300 ms before each reply (EHLO, MAIL, RCPT, final dot);
  throttle  421 4.7.0 after 50 messages on one connection, 451 4.7.0 for
            recipients past 600 a second.

What must hold: nothing is lost; the fast receiver's share finishes first,
near the speed it has alone; once the adaptive controller has settled the
throttling receiver is never sent more than it allows; the accounting file
has a "backoff" record for each cut.  Also: the configuration's shaping
errors are refused at start-up with file and line, a [destination] limit
holds, a response rule pauses a destination, and destinations that share
an MX set share their limits.
"""
import calendar
import random
import subprocess
import time

import pytest

from peers import assert_accounting_sane, read_accounting, run_send

TEMPLATE = ("From: news@sender.test\nTo: {{email}}\nSubject: Hello "
            "{{name}}\n\nDear {{name}},\nthis is for you alone.\n")


def _rows(spec, seed=1):
    """[(email, name)] for {domain: count}, shuffled."""
    rows = []
    for domain, n in spec.items():
        rows += [(f"u{i}@{domain}", f"Name{i}") for i in range(n)]
    random.Random(seed).shuffle(rows)
    return rows


def _window(stats):
    times = [t for t, _ in stats["accepted"]]
    return min(times), max(times)


@pytest.mark.slow
def test_three_receivers_fast_first_throttled_within_limit(
        mailroom, tmp_path, receivers):
    fast = receivers("fast")
    slow = receivers("slow", delay=0.3)
    throttle = receivers("throttle", per_conn=50, rate=600)
    routes = {"fast.test": fast.address, "slow.test": slow.address,
              "throttle.test": throttle.address}
    opts = {"queue.retry_base": "1s", "queue.retry_max_interval": "2s",
            "queue.max_attempts": "100", "smtp.max_connections": "100",
            "general.hostname": "mailroom.test"}

    # The fast receiver alone first: its full speed on this machine.
    solo_rows = _rows({"fast.test": 8000}, seed=2)
    r = run_send(mailroom, tmp_path / "solo", template=TEMPLATE,
                 rows=solo_rows, routes=routes, opts=opts, timeout=120)
    assert r.rc == 0, r
    solo = fast.stop()
    t0, t1 = _window(solo)
    solo_rate = len(solo["accepted"]) / (t1 - t0)
    fast = receivers("fast", host="127.0.0.3")
    routes["fast.test"] = fast.address

    spec = {"fast.test": 30000, "throttle.test": 15000, "slow.test": 5000}
    rows = _rows(spec)
    r = run_send(mailroom, tmp_path / "mixed", template=TEMPLATE, rows=rows,
                 routes=routes, opts=opts, timeout=240)
    assert r.rc == 0, r
    assert r.count("delivered") == 50000 and r.count("bounced") == 0, r
    assert_accounting_sane(r, recipients=[e for e, _ in rows])
    st = {name: rc.stop() for name, rc in
          (("fast", fast), ("slow", slow), ("throttle", throttle))}

    # Nothing lost, nothing doubled: each receiver has exactly its share.
    for name, domain in (("fast", "fast.test"), ("slow", "slow.test"),
                         ("throttle", "throttle.test")):
        got = [a for _, a in st[name]["accepted"]]
        want = {e for e, _ in rows if e.endswith("@" + domain)}
        assert len(got) == len(want) and set(got) == want, name

    # The fast share finishes first, near its solo speed.
    ends = {name: _window(s)[1] for name, s in st.items()}
    assert ends["fast"] < ends["slow"] and ends["fast"] < ends["throttle"], \
        ends
    f0, f1 = _window(st["fast"])
    fast_rate = 30000 / (f1 - f0)
    print(f"fast alone {solo_rate:.0f}/s, in the mix {fast_rate:.0f}/s; "
          f"ends {ends}")
    assert fast_rate >= 0.6 * solo_rate, (fast_rate, solo_rate)

    # The slow receiver got many connections (its replies are slow but
    # positive), the throttling one fewer than allowed after it said 421.
    assert st["slow"]["max_open"] > 20, st["slow"]["max_open"]

    # The throttling receiver: the controller learns from the first 451
    # (the rate) and the first 421 (messages per connection, which comes
    # only once a connection carried 50); two seconds after the later of
    # the two it has settled, and from then on no 451 and no 421 at all.
    th = st["throttle"]
    assert th["deferred"], "the rate limit was never reached"
    assert th["conn_421"], "the per-connection limit was never reached"
    settled = max(min(th["deferred"]), min(th["conn_421"])) + 2.0
    th0, th1 = _window(th)
    assert th1 > settled + 10, "the throttled share ran too briefly to judge"
    assert [t for t in th["deferred"] if t > settled] == []
    assert [t for t in th["conn_421"] if t > settled] == []
    print(f"throttle: {len(th['deferred'])} x 451 and "
          f"{len(th['conn_421'])} x 421, settled {settled - th0:.1f} s "
          f"after its first delivery, {15000 / (th1 - th0):.0f}/s")
    # ... and it still ran at a good share of what it allows (600/s).
    assert 15000 / (th1 - th0) > 300

    # Each back-off is in the accounting file, with its reason.
    backoffs = [x for x in r.accounting if x["type"] == "backoff"]
    th = [x for x in backoffs if x["domain"] == throttle.address]
    assert any(x["reply"].startswith("rate unlimited -> ") and
               x["code"] == "451" and x["dsn"] == "4.7.0" for x in th), th
    assert any(x["reply"].startswith("per_connection unlimited -> 50") and
               x["code"] == "421" for x in th), th
    assert not [x for x in backoffs if x["domain"] != throttle.address], \
        backoffs
    # The summary shows the destinations and what they learned.
    dest = [v for k, v in r.summary_lines() if k == "destination"]
    assert any(throttle.address in d and "per_connection=50" in d
               for d in dest), dest


def test_destination_section_limits_connections_and_rate(
        mailroom, tmp_path, receivers):
    rc = receivers("fast")
    cfg = tmp_path / "mailroom.conf"
    cfg.write_text(f"[destination {rc.host}:{rc.port}]\n"
                   "max_connections = 2\n"
                   "max_message_rate = 100/s\n")
    rows = _rows({"limited.test": 600})
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE, rows=rows,
                 routes={"limited.test": rc.address},
                 opts={"smtp.max_connections": "50"},
                 extra_args=["--config", str(cfg)], timeout=60)
    assert r.rc == 0, r
    st = rc.stop()
    assert len(st["accepted"]) == 600
    assert st["max_open"] <= 2, st["max_open"]
    t0, t1 = _window(st)
    # 600 at 100/s: about 6 s (the bucket starts with a tenth of a second).
    assert t1 - t0 >= 5.0, t1 - t0


def test_response_rule_pauses_destination(mailroom, tmp_path, receivers):
    rc = receivers("throttle", per_conn=1000, rate=50)
    cfg = tmp_path / "mailroom.conf"
    cfg.write_text("[shaping]\n"
                   "rule = backoff 3s ^451 4\\.7\\.0 .*slow down\n")
    rows = _rows({"paused.test": 200})
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE, rows=rows,
                 routes={"paused.test": rc.address},
                 opts={"queue.retry_base": "500ms",
                       "queue.max_attempts": "100"},
                 extra_args=["--config", str(cfg)], timeout=90)
    assert r.rc == 0, r
    assert r.count("delivered") == 200
    pauses = [x for x in r.accounting if x["type"] == "backoff"]
    assert pauses and all(x["reply"].startswith("pause sending -> paused 3s")
                          for x in pauses), pauses
    assert 'rule "backoff 3s' in pauses[0]["reply"]
    st = rc.stop()
    # Paused for 3 s after each burst of refusals: no refusals during it.
    d = sorted(st["deferred"])
    p = sorted(calendar.timegm(time.strptime(x["time"][:19],
               "%Y-%m-%dT%H:%M:%S")) + float("0" + x["time"][19:-1])
               for x in pauses)
    assert p and d, (p, d)
    for t in p:
        during = [x for x in d if t + 0.5 < x < t + 2.5]
        assert during == [], (t, during)


def test_domains_with_the_same_mx_share_one_destination(
        mailroom, tmp_path, receivers):
    rc = receivers("fast")
    cfg = tmp_path / "mailroom.conf"
    # A section for the MX host (here the route's host:port) applies to
    # every domain that delivers there.
    cfg.write_text(f"[destination {rc.host}:*]\nmax_connections = 1\n")
    rows = _rows({"a.test": 300, "b.test": 300, "c.test": 300})
    routes = {d: rc.address for d in ("a.test", "b.test", "c.test")}
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE, rows=rows,
                 routes=routes, extra_args=["--config", str(cfg)],
                 opts={"general.workers": "2"}, timeout=60)
    assert r.rc == 0, r
    st = rc.stop()
    assert len(st["accepted"]) == 900
    # One destination for the three domains (their MX set is the same),
    # so one connection in all, even over two delivery loops; with a
    # destination per domain there would be three.
    assert st["max_open"] == 1, st["max_open"]
    dest = [v for k, v in r.summary_lines() if k == "destination"]
    assert len(dest) == 1 and dest[0].startswith(rc.address), dest


def test_group_by_mx_off_gives_each_domain_its_own(
        mailroom, tmp_path, receivers):
    rc = receivers("fast")
    rows = _rows({"a.test": 100, "b.test": 100})
    routes = {d: rc.address for d in ("a.test", "b.test")}
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE, rows=rows,
                 routes=routes, opts={"shaping.group_by_mx": "no"},
                 timeout=60)
    assert r.rc == 0, r
    rc.stop()
    dest = sorted(v.split()[0] for k, v in r.summary_lines()
                  if k == "destination")
    assert dest == ["a.test", "b.test"], dest


@pytest.mark.parametrize("text,where,message", [
    ("[shaping]\nrule = backoff 5m ^421 (unclosed\n", ":2:",
     "bad regular expression"),
    ("[shaping]\nrule = slowdown 5m x\n", ":2:", "expected \"throttle"),
    ("[shaping]\nrule = backoff x\n", ":2:", "needs a duration"),
    ("[shaping]\nmax_message_rate = -5/s\n", ":2:", "bad value"),
    ("\n[destination *.example.com]\nmax_connections = -1\n", ":3:",
     "max_connections: bad value \"-1\""),
    ("[destination x]\nmax_message_rate = 10/fortnight\n", ":2:",
     "bad value"),
    ("[destination x]\nrule = throttle [\n", ":2:",
     "bad regular expression"),
    ("[destination x]\nspeed = 3\n", ":2:", "unknown key \"speed\""),
    ("[destination x]\nadaptive = maybe\n", ":2:", "yes or no"),
    ("[destination ]\nmax_connections = 1\n", ":2:", "needs a name"),
    ("[destination x]\nmax_connections = 1\n[destination x]\n"
     "max_connections = 2\n", ":4:", "appears twice"),
    ("[pool bulk]\nsource = 10.0.0.300\n", ":2:",
     "source: \"10.0.0.300\" is not an IPv4 or IPv6 address"),
    ("# pools\n[pool bulk]\naccount = a\n", ":2:",
     "[pool bulk] has no source address"),
    ("[pool a]\nsource = 127.0.0.5\naccount = x\n[pool b]\n"
     "source = 127.0.0.6\naccount = x\n", ":6:", "already in [pool a]"),
    ("[pool ]\nsource = 127.0.0.5\n", ":2:", "needs a name"),
    ("[pool a]\nsource = 127.0.0.5\n[pool a]\nsource = 127.0.0.6\n",
     ":4:", "appears twice"),
    ("[pool a]\nsource = 127.0.0.5\nspeed = 1\n", ":3:",
     "unknown key \"speed\""),
])
def test_bad_shaping_config_refused_with_file_and_line(
        mailroom, tmp_path, text, where, message):
    cfg = tmp_path / "bad.conf"
    cfg.write_text(text)
    p = subprocess.run([mailroom, "config", "--config", str(cfg)],
                       capture_output=True, text=True)
    assert p.returncode != 0
    assert f"{cfg}{where}" in p.stderr and message in p.stderr, p.stderr
    # The same file stops a send before anything is sent.
    (tmp_path / "t.eml").write_text(TEMPLATE)
    (tmp_path / "l.csv").write_text("email,name\na@x.test,A\n")
    p = subprocess.run([mailroom, "send", "--config", str(cfg),
                        "--template", str(tmp_path / "t.eml"),
                        "--list", str(tmp_path / "l.csv")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and message in p.stderr, p.stderr
    assert f"{cfg}{where}" in p.stderr, p.stderr
    assert "0/1 done" not in p.stderr          # stopped before sending
    # ... and a daemon does not start with it.
    p = subprocess.run([mailroom, "daemon", "--config", str(cfg),
                        "--store", str(tmp_path / "s.db")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and f"{cfg}{where}" in p.stderr, p.stderr


def test_governor_slots_bound_sessions_and_decisions_are_logged(
        mailroom, tmp_path, receivers):
    """The governor (D9) every governor.interval: its slots bound the
    sessions of all destinations together, and each decision is logged
    and ends up in the summary; the retry limit (D6) comes with it."""
    rc = receivers("slow", delay=0.05)
    rows = _rows({"gov.test": 150})
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE, rows=rows,
                 routes={"gov.test": rc.address},
                 opts={"governor.interval": "1s",
                       "governor.initial_slots": "3",
                       "governor.max_slots": "3",
                       "smtp.max_connections": "50",
                       "general.log_level": "info"}, timeout=90)
    assert r.rc == 0, r
    st = rc.stop()
    assert len(st["accepted"]) == 150
    assert st["max_open"] <= 3, st["max_open"]
    decisions = [l for l in r.stderr.splitlines() if " governor " in l
                 and "interval=" in l]
    assert decisions, r.stderr[-2000:]
    d = decisions[0]
    for key in ("ms=", "pa=", "ea=", "us=", "slots=", "retry_limit=",
                "reason="):
        assert key in d, d
    assert "slots=3.00->3.00" in d, d   # clamped at max_slots
    [gov] = [v for k, v in r.summary_lines() if k == "governor"]
    assert gov.startswith("interval=") and "reason=" in gov, gov


def _positions(stats, domain):
    """Indices, in order of acceptance, of domain's recipients."""
    order = [a for _, a in sorted(stats["accepted"])]
    return [i for i, a in enumerate(order) if a.endswith("@" + domain)]


POLICY_CFG = "[destination {addr}]\nmax_connections = 1\n" \
             "max_message_rate = 300/s\n"


@pytest.mark.parametrize("policy,age_cap", [
    ("round-robin", "5m"), ("longest", "5m"), ("longest", "1s"),
    ("oldest", "5m")])
def test_queue_policies_fairness(mailroom, tmp_path, receivers, policy,
                                 age_cap):
    """D3: which waiting domain a session serves next.  One connection
    at 300/s to one destination; a big domain (900) and two small ones
    (100 each) wait for it.  Round-robin serves them in turn (the small
    ones are done in the first ~300 messages); longest first serves the
    big one until it is as short as the others; with an age cap of 1 s a
    small one is served within about a second anyway; oldest first
    follows the entries' age (all equal here: no domain starves)."""
    rc = receivers("fast")
    cfg = tmp_path / "mailroom.conf"
    cfg.write_text(POLICY_CFG.format(addr=rc.address))
    rows = _rows({"big.test": 900, "s1.test": 100, "s2.test": 100})
    routes = {d: rc.address for d in ("big.test", "s1.test", "s2.test")}
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE, rows=rows,
                 routes=routes, extra_args=["--config", str(cfg)],
                 opts={"queue.policy": policy, "queue.age_cap": age_cap,
                       "general.workers": "1"}, timeout=60)
    assert r.rc == 0, r
    st = rc.stop()
    assert len(st["accepted"]) == 1100 and st["max_open"] == 1
    s1, s2 = _positions(st, "s1.test"), _positions(st, "s2.test")
    big = _positions(st, "big.test")
    if policy == "round-robin":
        # Each in turn: the small ones finish within the first ~300.
        assert max(s1) < 330 and max(s2) < 330, (max(s1), max(s2))
    elif age_cap == "5m":
        if policy == "longest":
            # The big one alone until it is down to the small ones' size.
            assert min(s1) > 700 and min(s2) > 700, (min(s1), min(s2))
        else:
            # Oldest first with equal ages: every domain gets service
            # early, none waits for another to drain.
            assert min(s1) < 100 and min(s2) < 100 and min(big) < 100
    else:
        # Longest first, but a domain not served for 1 s goes first: at
        # 300/s the small ones are served within ~1.5 s (450 messages).
        assert min(s1) < 450 and min(s2) < 450, (min(s1), min(s2))
        assert min(s1) > 100 or min(s2) > 100   # longest did lead


def test_source_addresses_taken_in_turn(mailroom, tmp_path, receivers):
    """shaping.source: connections are bound to each local address in
    turn, each with its own limits per destination."""
    rc = receivers("fast")
    cfg = tmp_path / "mailroom.conf"
    cfg.write_text("[shaping]\nsource = 127.0.0.5\nsource = 127.0.0.6\n"
                   f"[destination {rc.address}]\nmax_connections = 2\n")
    rows = _rows({"src.test": 2000})
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE, rows=rows,
                 routes={"src.test": rc.address},
                 extra_args=["--config", str(cfg)], timeout=60)
    assert r.rc == 0, r
    st = rc.stop()
    assert len(st["accepted"]) == 2000
    assert set(st["peers"]) == {"127.0.0.5", "127.0.0.6"}, st["peers"]
    # Two per source: up to four at once.
    assert 2 < st["max_open"] <= 4, st["max_open"]
    dest = [v for k, v in r.summary_lines() if k == "destination"]
    assert sorted(d.split()[1] for d in dest) == [
        "source=127.0.0.5", "source=127.0.0.6"], dest


POOL_CFG = ("[shaping]\nsource = 127.0.0.5\n"
            "[pool bulk]\nsource = 127.0.0.6\nsource = 127.0.0.7\n"
            "campaign = spring\n"
            "[pool vip]\nsource = 127.0.0.8\nsource = 127.0.0.6\n")


@pytest.mark.parametrize("how,want", [
    ([], {"127.0.0.5"}),
    (["--pool", "bulk"], {"127.0.0.6", "127.0.0.7"}),
    (["--pool", "vip"], {"127.0.0.8", "127.0.0.6"}),
    (["--campaign", "spring"], {"127.0.0.6", "127.0.0.7"}),
    (["--campaign", "autumn"], {"127.0.0.5"}),
])
def test_source_pools_per_campaign(mailroom, tmp_path, receivers, how,
                                   want):
    """[pool NAME] sections: a campaign goes out from its pool's source
    addresses only (send --pool, or the pool naming the campaign), in
    turn; the rest from shaping.source."""
    rc = receivers("fast")
    cfg = tmp_path / "mailroom.conf"
    cfg.write_text(POOL_CFG)
    extra = ["--config", str(cfg)] + how
    if "--campaign" in how:
        extra += ["--store", str(tmp_path / "store.db")]
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE,
                 rows=_rows({"pool.test": 400}),
                 routes={"pool.test": rc.address}, extra_args=extra,
                 opts={"smtp.max_connections": "2",
                       "general.log_level": "info"}, timeout=60)
    assert r.rc == 0, r
    st = rc.stop()
    assert len(st["accepted"]) == 400
    assert set(st["peers"]) == want, st["peers"]
    if want != {"127.0.0.5"}:
        assert "event=pool pool=" in r.stderr, r.stderr[-2000:]


def test_pool_without_the_hosts_address_family(mailroom, tmp_path,
                                               receivers):
    """A pool of IPv4 addresses cannot reach an IPv6-only host: the mail
    is not sent from some other address of the machine; the host counts
    as down with a reason that says why, and the recipient ends as the
    retry rules say."""
    rc = receivers("fast", host="::1")
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE,
                 rows=_rows({"v6.test": 1}),
                 routes={"v6.test": f"[::1]:{rc.port}"},
                 opts={"shaping.source": "127.0.0.5"}, timeout=60)
    rc.stop()
    recs = read_accounting(tmp_path / "run" / "accounting.csv", "csv")
    assert recs and all("no source address of [::1]" in x["reply"]
                        for x in recs if x["type"] != "delivered"), recs
    assert not [x for x in recs if x["type"] == "delivered"], recs
    assert r.rc == 0, r


@pytest.mark.parametrize("args,message", [
    (["--pool", "nope"], "send.pool: there is no [pool nope] section"),
    (["-o", "shaping.source=not-an-ip"],
     "shaping.source: \"not-an-ip\" is not an IPv4 or IPv6"),
])
def test_bad_source_setting_refused(mailroom, tmp_path, args, message):
    (tmp_path / "t.eml").write_text(TEMPLATE)
    (tmp_path / "l.csv").write_text("email,name\na@x.test,A\n")
    p = subprocess.run([mailroom, "send"] + args +
                       ["--template", str(tmp_path / "t.eml"),
                        "--list", str(tmp_path / "l.csv")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 78, p
    assert message in p.stderr, p.stderr


def test_dynamic_retry_limit_follows_failure_rate(mailroom, tmp_path,
                                                 receivers):
    """D6: a receiver that defers every recipient makes the delivery
    failure rate (attempts / successes) unbounded; at the governor's next
    interval the retry limit drops from queue.max_attempts (10) to
    queue.retry_limit_low (5), and recipients bounce after 5 attempts.
    (Attempts are 500 ms apart: the 5th comes at about 2 s, a second
    after the governor's first decision.)"""
    rc = receivers("throttle", rate=0)
    rows = _rows({"defer.test": 20})
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE, rows=rows,
                 routes={"defer.test": rc.address},
                 opts={"governor.interval": "1s",
                       "queue.max_attempts": "10",
                       "queue.retry_limit_low": "5",
                       "queue.retry_base": "500ms",
                       "queue.retry_max_interval": "500ms",
                       "shaping.adaptive": "no",
                       "general.log_level": "info"}, timeout=60)
    assert r.rc == 0, r
    rc.stop()
    assert "event=retry-limit limit=5 reason=dfr_over" in r.stderr, \
        r.stderr[-3000:]
    bounced = r.records("bounced")
    assert len(bounced) == 20
    assert all(b["attempt"] == "5" and "retry limit reached" in b["reply"]
               for b in bounced), bounced[:2]


def test_campaign_reader_stops_above_backlog(mailroom, tmp_path, receivers):
    """D8 on the campaign side: with send.max_backlog = 100 the reader
    hands the loops at most 100 recipients not yet final, stops, and
    reads on below 90; everything is delivered."""
    rc = receivers("slow", delay=0.01)
    rows = _rows({"bp.test": 3000})
    r = run_send(mailroom, tmp_path / "run", template=TEMPLATE, rows=rows,
                 routes={"bp.test": rc.address},
                 opts={"send.max_backlog": "100",
                       "general.log_level": "info"}, timeout=120)
    assert r.rc == 0, r
    assert r.count("delivered") == 3000
    st = rc.stop()
    assert len(st["accepted"]) == 3000
    paused = r.stderr.count("event=backpressure state=paused reader=list")
    resumed = r.stderr.count("event=backpressure state=resumed reader=list")
    assert paused >= 1 and resumed >= 1, r.stderr[-2000:]
    assert "backlog=100 max=100" in r.stderr
