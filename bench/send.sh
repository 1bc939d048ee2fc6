#!/bin/sh
# send.sh - mailroom send against its peers, in one run, on loopback.
#
#   [ROUNDS=3] sh bench/send.sh [RECIPIENTS] [POSTFIX_MESSAGES]
#
# Three senders deliver 1 KB messages to Postfix's smtp-sink:
#   (a) smtp-source -d -s 20: connection reuse, 20 parallel sessions, the
#       ceiling of a plain SMTP client on this machine;
#   (b) mailroom send: RECIPIENTS (default 1,000,000) over 1,000 domains,
#       a ~1 KB template with 3 fields, at most 20 sessions, without and
#       (b2) with recovery (a store and the journals), alternating
#       ROUNDS times; (b3) with recovery and every recipient deferred,
#       the largest recovery state;
#   (c) Postfix as a relay, fed by smtp-source, delivering to the sink
#       (POSTFIX_MESSAGES, default 50,000: it is the slow one).
# It prints a Markdown table of messages per second and the ratios, and
# mailroom's peak RSS and bytes per queued recipient.  Runs as root (it
# starts a private Postfix instance); everything stays on 127.0.0.1.
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000000}
PN=${2:-50000}
SIZE=1100		# smtp-source -l: about mailroom's rendered size

sh scripts/deps.sh build demo
command -v /usr/bin/time >/dev/null || {
	apt-get update -qq && apt-get install -y -qq time >/dev/null; }
sh scripts/build.sh >/dev/null

W=$(mktemp -d /tmp/mailroom-bench.XXXXXX)
chmod 755 "$W"
PIDS=""
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	[ -f "$W/pf/etc/main.cf" ] && postfix -c "$W/pf/etc" stop \
	    >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
rate() { echo "scale=1; $1 / ($3 - $2)" | bc; }

# The campaign: N rows over 1,000 domains, a 1 KB template, 3 fields.
awk -v n="$N" 'BEGIN { print "email,first_name,code";
	for (i = 0; i < n; i++)
		printf "user%d@domain%d.test,Name%d,%08d\n", i, i % 1000, i, i * 7 }' \
    > "$W/list.csv"
{
	printf 'From: Bench <bench@sender.test>\nTo: {{first_name}} <{{email}}>\n'
	printf 'Subject: Your code {{code}}\n\nHello {{first_name}},\n\n'
	i=0
	while [ $i -lt 11 ]; do
		printf 'This is the body text of a benchmark message, padded '
		printf 'to about one kilobyte.\n'
		i=$((i + 1))
	done
	printf '\nYour code: {{code}}\n'
} > "$W/tmpl.eml"

sink() {	# sink PORT [extra smtp-sink options]
	port=$1; shift
	/usr/sbin/smtp-sink -u nobody "$@" 127.0.0.1:"$port" 1024 &
	PIDS="$PIDS $!"
	SINK=$!
	sleep 0.3
}

echo "== (a) smtp-source -d -s 20 -m $N -l $SIZE -> smtp-sink" >&2
sink 25301
t0=$(now)
smtp-source -d -s 20 -m "$N" -l $SIZE -f a@sender.test -t b@rcpt.test \
    127.0.0.1:25301
t1=$(now)
A=$(rate "$N" "$t0" "$t1")
kill $SINK

# (b) and (b2) alternate ROUNDS times and report medians: on a 2-CPU
# machine the sink and mailroom share the cores and one run varies by
# +-20%, too much to compare two single runs.
ROUNDS=${ROUNDS:-3}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
run_send() {	# run_send TAG PORT [extra options]: one mailroom send run
	tag=$1 port=$2; shift 2
	sink "$port"
	/usr/bin/time -f "%M %U %S" -o "$W/time.$tag" ./build/mailroom send \
	    --no-progress --template "$W/tmpl.eml" --list "$W/list.csv" \
	    --route "*=127.0.0.1:$port" -o smtp.max_connections=20 \
	    -o general.hostname=bench.mailroom.test "$@" > "$W/summary.$tag"
	kill $SINK
	awk '/^rate:/ { print $2 }' "$W/summary.$tag" >> "$W/rates.$tag"
	awk '{ print $2 + $3 }' "$W/time.$tag" >> "$W/cpu.$tag"
}
STORE="$W/store/mailroom.db"
r=0
while [ $r -lt "$ROUNDS" ]; do
	r=$((r + 1))
	echo "== (b) mailroom send, $N recipients -> smtp-sink (round $r)" >&2
	run_send off $((25310 + r))
	echo "== (b2) mailroom send with recovery, $N recipients (round $r)" >&2
	rm -rf "$W/store"
	mkdir -p "$W/store"
	# Sample the recovery state on disk (store + journals) while it runs.
	( peak=0
	  while :; do
		now=$(du -sb "$W/store" 2>/dev/null | cut -f1)
		[ "${now:-0}" -gt "$peak" ] && peak=$now && echo "$peak" > "$W/peak"
		sleep 0.2
	  done ) &
	SAMPLER=$!
	PIDS="$PIDS $SAMPLER"
	run_send on $((25320 + r)) --store "$STORE" --campaign bench
	kill $SAMPLER
done
B=$(median < "$W/rates.off")
B2=$(median < "$W/rates.on")
CPU=$(median < "$W/cpu.off")
CPU2=$(median < "$W/cpu.on")
RSS=$(cut -d' ' -f1 "$W/time.off")
RSS2=$(cut -d' ' -f1 "$W/time.on")
MEM=$(awk '/^memory:/ { print $2 }' "$W/summary.off")
WORKERS=$(awk '/^sessions:/ { print $2 }' "$W/summary.off")
DELIVERED=$(awk '/^delivered:/ { print $2 }' "$W/summary.off")
DELIVERED2=$(awk '/^delivered:/ { print $2 }' "$W/summary.on")
PEAK=$(cat "$W/peak")
STOREB=$(du -sb "$STORE" | cut -f1)

# (b3) The worst case for the recovery state: every recipient deferred
# (the sink answers RCPT with 4xx), so each one has an attempt count to
# keep.  Stopped with SIGTERM once every recipient has been tried once
# (bounded: at most 20 minutes); the store then holds the final snapshot.
echo "== (b3) mailroom send, every RCPT deferred, recovery on" >&2
mkdir -p "$W/store3"
sink 25330 -r RCPT
./build/mailroom send --no-progress --store "$W/store3/mailroom.db" \
    --campaign deferred --template "$W/tmpl.eml" --list "$W/list.csv" \
    --route '*=127.0.0.1:25330' -o smtp.max_connections=20 \
    -o general.hostname=bench.mailroom.test -o queue.retry_base=1h \
    --accounting "$W/acct3.csv" > "$W/summary.def" 2> "$W/err.def" &
MR=$!
PIDS="$PIDS $MR"
t=0
while [ "$( { wc -l < "$W/acct3.csv"; } 2>/dev/null || echo 0)" -le "$N" ] &&
    [ $t -lt 1200 ]; do
	sleep 1
	t=$((t + 1))
done
kill -TERM $MR 2>/dev/null || true
wait $MR || true
kill $SINK
TRIED=$(($(wc -l < "$W/acct3.csv") - 1))
DEFSTORE=$(du -sb "$W/store3/mailroom.db" | cut -f1)
rm -f "$W/acct3.csv"

echo "== (c) smtp-source -> Postfix relay -> smtp-sink, $PN messages" >&2
PF="$W/pf"
mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
chown postfix "$PF/data"
sed -e 's/^smtp \{6\}inet .*smtpd$/127.0.0.1:25304 inet n - n - - smtpd/' \
    /etc/postfix/master.cf > "$PF/etc/master.cf"
cat > "$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
maillog_file_prefixes = $PF
maillog_file = $PF/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay.bench.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:25303
default_destination_concurrency_limit = 20
smtpd_recipient_restrictions = permit_mynetworks, reject
EOF
postfix -c "$PF/etc" start >/dev/null 2>&1
sink 25303 -M "$PN"
t0=$(now)
smtp-source -d -s 20 -m "$PN" -l $SIZE -f a@sender.test -t b@rcpt.test \
    127.0.0.1:25304
while kill -0 $SINK 2>/dev/null; do sleep 0.1; done	# -M: all arrived
t1=$(now)
C=$(rate "$PN" "$t0" "$t1")

cat <<EOF

| sender | messages | msg/s |
|---|---|---|
| (a) smtp-source -d -s 20 | $N | $A |
| (b) mailroom send (median of $ROUNDS) | $DELIVERED | $B |
| (b2) mailroom send, recovery on (median of $ROUNDS) | $DELIVERED2 | $B2 |
| (c) Postfix relay (smtp-source -> Postfix -> sink) | $PN | $C |

- (b)/(a) = $(echo "scale=2; $B / $A" | bc)
- (b)/(c) = $(echo "scale=1; $B / $C" | bc)
- recovery on / off = $(echo "scale=3; $B2 / $B" | bc) (target >= 0.9); runs:
  off $(tr '\n' ' ' < "$W/rates.off"), on $(tr '\n' ' ' < "$W/rates.on")
- mailroom CPU seconds (user + sys, median): off $CPU, on $CPU2
- recovery state on disk: peak $PEAK bytes during the run (the store
  plus journal segments, which are allocated whole, 8 MB each); the
  store file after it: $STOREB bytes, $(echo "scale=3; $STOREB / $N" | bc)
  bytes per recipient
- every recipient deferred ($TRIED tried once, then stopped): store
  file $DEFSTORE bytes, $(echo "scale=3; $DEFSTORE / $N" | bc) bytes per
  recipient (target < 2 plus a constant)
- mailroom peak RSS: $((RSS / 1024)) MB for $N recipients
  ($((RSS2 / 1024)) MB with recovery on)
- mailroom bytes per queued recipient: $MEM (recipient table + queue entry)
- mailroom SMTP sessions opened: $WORKERS
- machine: $(nproc) CPUs, $(uname -r)
EOF
