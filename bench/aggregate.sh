#!/bin/sh
# aggregate.sh - POP3 aggregation (issue 5): one user's three accounts
# fetched and deleted by fetchmail through `mailroom pop3-proxy
# --aggregate` and by fetchmail polling the three Dovecots directly, in
# one run, on loopback (see bench/aggregate.py for what is measured).
#
#   sh bench/aggregate.sh [MESSAGES_PER_ACCOUNT] [PAIRS]
#
# Runs as root (Dovecot is started as root and drops privileges).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh build bench
sh scripts/build.sh >/dev/null
exec /usr/bin/python3 bench/aggregate.py "$@"
