#!/bin/sh
# pop3.sh - the POP3 edge proxy against Dovecot alone, in one run, on
# loopback (see bench/pop3.py for what is measured).
#
#   sh bench/pop3.sh [USERS] [SECONDS]
#
# Runs as root (Dovecot is started as root and drops privileges).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh build bench
sh scripts/build.sh >/dev/null
exec /usr/bin/python3 bench/pop3.py "$@"
