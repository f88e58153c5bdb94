# shellcheck shell=bash
# What the bash scripts share: their messages, the pid files of what they start, and free
# ports (the Python test beds share scripts/lib/jvm_service.py).
# Sourced, never run: `. "$(dirname "$0")/lib/common.sh"`.

# The script's name, for its messages.
PROG=${PROG:-$(basename "$0")}

say() { echo "$PROG: $*" >&2; }
die() { say "error: $*"; exit 1; }

# read_pid FILE: the pid a pid file holds (digits only); fails when there is none.
read_pid() { [[ -s $1 ]] && tr -dc 0-9 <"$1"; }

# runs_as PID PATTERN: PID is alive and its command line contains PATTERN (a pid file can
# outlive its process, and the pid be reused by another).
runs_as() {
  local pid=$1 pattern=$2 cmdline
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  # No pipe into grep -q: under pipefail, tr killed by SIGPIPE would fail the check.
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$pattern"* ]]
}

# free_ports N [HOST]: N TCP ports free on HOST (127.0.0.1 by default), and on 127.0.0.1 too
# when HOST is another address (a listener may bind both), printed on one line.
free_ports() {
  python3 -c '
import socket, sys
n, host = int(sys.argv[1]), sys.argv[2]
socks, ports = [], []
while len(ports) < n:
    s = socket.socket()
    socks.append(s)
    s.bind((host, 0))
    port = s.getsockname()[1]
    if host != "127.0.0.1":
        probe = socket.socket()
        socks.append(probe)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
    ports.append(port)
print(*ports)
for s in socks:
    s.close()
' "$1" "${2:-127.0.0.1}"
}
