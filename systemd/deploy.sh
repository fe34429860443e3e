#!/bin/sh
# deploy.sh USER@HOST BINARY: put a new edged binary on a Pi without
# breaking it (`make deploy HOST=pi@raspberrypi.local` builds BINARY and
# runs this).
#
#  1. copy BINARY to a temp file on the Pi (scp), then take the Pi's
#     deploy lock: a second deploy to the same Pi fails at once (exit 6);
#  2. run `NEW validate --strict` there against the Pi's config, with the
#     service's secrets (DEPLOY_ENV_FILE): a binary that does not run there
#     or refuses the config is rejected and nothing changes;
#  3. if the installed binary is proven good now (the service is active,
#     its main process runs BIN's bytes from BIN, /readyz is 200), keep it
#     as BIN.prev; otherwise BIN.prev stays as it is, so only a binary
#     that was seen working is ever rolled back to; swap the new one in
#     with a rename (atomic: BIN is always a whole binary);
#  4. restart the service and wait up to DEPLOY_TIMEOUT seconds for a new
#     main process that systemd calls active and whose /readyz is 200;
#     check it runs BIN (not another path, not a replaced file) with the
#     copied bytes and version; then it must stay the same process,
#     active and ready, for DEPLOY_SETTLE seconds;
#  5. if any of that fails, put BIN.prev back (again by a rename),
#     restart and wait for that: exit 4 (5 if the old one fails too).
#
# Environment (defaults in brackets):
#   DEPLOY_TIMEOUT    seconds to become ready [60]
#   DEPLOY_SETTLE     seconds it must then stay up [5]
#   DEPLOY_READY_URL  probed on the Pi with curl or wget
#                     [http://127.0.0.1:8080/readyz]; "" = systemd's
#                     "active" only (edged is Type=notify: READY=1)
#   DEPLOY_CONNECT_TIMEOUT  seconds for ssh to reach the Pi [10]; a
#                     session that stops answering ends after 15 s
#   SSH, SCP          the commands, with options [ssh] [scp]; their own
#                     -o options win over the timeouts above
#   DEPLOY_BIN, DEPLOY_CONFIG, DEPLOY_ENV_FILE, DEPLOY_SERVICE, DEPLOY_SYSTEMCTL,
#   DEPLOY_LOCK       on the Pi [/usr/bin/edged] [/etc/edged/edged.yaml]
#                     [/etc/edged/env] [edged] [systemctl]
#                     [/run/lock/edged-deploy.lock]
# The login user needs sudo without a password (Raspberry Pi OS's pi
# user has it) unless it is root. Exit: 0 deployed, 2 usage, 3 rejected
# before the swap (nothing changed), 4 rolled back, 5 rollback not ready,
# 6 another deploy to this Pi is running (nothing changed), 1 anything
# else (the Pi cannot be reached, the copy failed, ...).
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 USER@HOST BINARY" >&2
	exit 2
fi
host=$1 binary=$2
[ -f "$binary" ] || { echo "deploy: $binary: no such file" >&2; exit 2; }
SSH=${SSH:-ssh}
SCP=${SCP:-scp}
# A Pi that is off or hangs fails the deploy in seconds instead of
# leaving it waiting on TCP: ssh gives up connecting after
# ConnectTimeout, and on a session whose keepalives go unanswered 3
# times 5 s apart. The first value ssh sees wins, so options in SSH and
# SCP come first.
timeouts="-o ConnectTimeout=${DEPLOY_CONNECT_TIMEOUT:-10} -o ServerAliveInterval=5 -o ServerAliveCountMax=3"

# q quotes one argument for the remote shell.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

if ! tmp=$($SSH $timeouts "$host" 'mktemp /tmp/edged-deploy.XXXXXX'); then
	echo "deploy: cannot reach $host over ssh (above); is it on and on the network, and does 'ssh $host' log in without a password prompt?" >&2
	exit 1
fi
echo "deploy: copying $binary to $host:$tmp" >&2
if ! $SCP $timeouts -q "$binary" "$host:$tmp"; then
	echo "deploy: copying to $host failed (above); nothing changed" >&2
	$SSH $timeouts "$host" "rm -f $(q "$tmp")" || true
	exit 1
fi

# The rest runs on the Pi, in one session. The script travels in the
# command line, not on stdin, which its commands could read.
remote=$(cat <<'REMOTE'
set -eu
new=$1 bin=$2 conf=$3 envfile=$4 svc=$5 timeout=$6 url=$7 systemctl=$8 lock=$9 settle=${10}
# A dropped ssh session (Ctrl-C, a closed lid) must not stop this half
# way with the new binary installed and no rollback: ignore the hangup
# and the broken pipe, and keep going without an audience.
trap '' HUP PIPE INT
say() { echo "deploy: $*" >&2 2>/dev/null || true; }
S=
[ "$(id -u)" = 0 ] || S="sudo -n"
trap 'rm -f "$new"' EXIT
chmod 0755 "$new"

# 1. One deploy at a time: two interleaved ones could each keep the
# other's binary as BIN.prev. The lock is held on fd 9 until this shell
# exits; what this script starts gets 9<&- so nothing outlives it with
# the lock.
command -v flock >/dev/null || { say "flock (util-linux) is missing on the Pi: cannot take the deploy lock"; exit 1; }
[ -e "$lock" ] || $S sh -c 'umask 022 && : >>"$1"' sh "$lock"
exec 9<"$lock"
if ! flock -n 9; then
	say "another deploy to this Pi is running (it holds $lock); nothing changed"
	exit 6
fi

# 2. The new binary checks the Pi's config, with the service's secrets
# (systemd's EnvironmentFile: KEY=VALUE lines, taken literally, one pair
# of quotes around the value removed; never run as shell).
if ! $S sh -c '
	if [ -f "$2" ]; then
		while IFS= read -r l || [ -n "$l" ]; do
			case $l in ""|"#"*|";"*|[!A-Za-z_]*) continue ;; *=*) ;; *) continue ;; esac
			k=${l%%=*} v=${l#*=}
			case $k in *[!A-Za-z0-9_]*) continue ;; esac
			case $v in \"*\") v=${v#\"} v=${v%\"} ;; \'"'"'*\'"'"') v=${v#?} v=${v%?} ;; esac
			export "$k=$v"
		done <"$2"
	fi
	exec "$3" validate --strict -c "$1"' sh "$conf" "$envfile" "$new"; then
	say "rejected: the new binary does not run here or refuses $conf (above); nothing changed"
	exit 3
fi
version=$("$new" version)
say "new binary: $version"

mainpid() { $systemctl show -p MainPID --value "$svc" 2>/dev/null || echo 0; }
probe() {
	if [ -z "$url" ]; then return 0; fi
	if command -v curl >/dev/null; then
		curl -fsS -m 2 -o /dev/null "$url" 2>/dev/null
	else
		wget -q -T 2 -O /dev/null "$url" 2>/dev/null
	fi
}
# runs PID FILE: the process runs $bin itself (not another path, not a
# file since replaced: its exe link would end in " (deleted)"), and the
# bytes of FILE. Sets why if not.
runs() {
	exe=$($S readlink "/proc/$1/exe" 2>/dev/null) || exe="?"
	if [ "$exe" != "$(readlink -f "$bin")" ]; then
		why="the service's process $1 runs $exe, not $bin (check ExecStart: systemctl cat $svc)"
		return 1
	fi
	if ! $S cmp -s "/proc/$1/exe" "$2"; then
		why="the service's process $1 runs other bytes than $2"
		return 1
	fi
}
# same_version: the installed binary says the copied one's version.
same_version() {
	v=$("$bin" version 2>&1) || v="?"
	[ "$v" = "$version" ] && return 0
	why="$bin version says \"$v\", the copied binary \"$version\""
	return 1
}
# restart restarts the service and waits up to $timeout s for a new main
# process that is active and ready (sets pid), or sets why.
restart() {
	old=$(mainpid)
	$S $systemctl restart --no-block "$svc" 9<&-
	end=$(($(date +%s) + timeout))
	while :; do
		pid=$(mainpid)
		if [ "$pid" != 0 ] && [ "$pid" != "$old" ] && $systemctl is-active --quiet "$svc" && probe; then
			return 0
		fi
		if [ "$(date +%s)" -ge "$end" ]; then
			why="not ready within ${timeout}s"
			return 1
		fi
		sleep 1
	done
}
# stays checks for $settle s that process $pid stays the main process,
# active and ready: a binary that crashes or is restarted seconds after
# READY=1 is not good. Sets why if not.
stays() {
	end=$(($(date +%s) + settle))
	while [ "$(date +%s)" -lt "$end" ]; do
		sleep 1
		now=$(mainpid)
		if [ "$now" != "$pid" ] || ! $systemctl is-active --quiet "$svc" || ! probe; then
			why="ready, but did not stay up for ${settle}s (main pid $pid, now $now)"
			return 1
		fi
	done
}
# swap puts $1 at $bin by a rename in the same directory.
swap() {
	$S cp "$1" "$bin.new"
	$S chmod 0755 "$bin.new"
	$S mv -f "$bin.new" "$bin"
}

# 3. Keep the installed binary as BIN.prev only if it is proven good now;
# a binary that did not work (left by a deploy whose rollback failed, or
# put there by hand) must never become the rollback target.
pid=$(mainpid) why=
if [ ! -f "$bin" ]; then
	why="there is none"
elif [ "$pid" = 0 ] || ! $systemctl is-active --quiet "$svc"; then
	why="the service is not active"
elif ! runs "$pid" "$bin"; then
	: # why is set
elif ! probe; then
	why="$url does not answer 200"
fi
if [ -z "$why" ]; then
	$S cp -p "$bin" "$bin.prev.new"
	$S mv -f "$bin.prev.new" "$bin.prev"
	say "kept $bin as $bin.prev: the running service is ready on it"
elif [ -f "$bin.prev" ]; then
	say "$bin is not proven good now ($why): $bin.prev stays the rollback target"
else
	say "$bin is not proven good now ($why), and there is no $bin.prev to roll back to"
fi
swap "$new"
say "installed $bin; restarting $svc, up to ${timeout}s to be ready, then ${settle}s to stay up"

# 4. Restart, check what runs, and watch it.
if restart && runs "$pid" "$new" && same_version && stays; then
	say "ready: $svc runs the new binary (pid $pid, $version) and stayed up ${settle}s"
	exit 0
fi

# 5. Roll back.
say "$why; its last words:"
$S $systemctl status --no-pager -n 20 "$svc" >&2 || true
if [ ! -f "$bin.prev" ]; then
	say "no previous binary to roll back to: $bin stays the new one"
	exit 5
fi
say "rolling back to $bin.prev"
swap "$bin.prev"
if restart && stays; then
	if ! runs "$pid" "$bin"; then
		say "note: $why"
	fi
	say "rolled back: $svc runs the previous binary again (pid $pid)"
	exit 4
fi
say "rolled back, but the previous binary is not good either ($why): journalctl -u $svc"
exit 5
REMOTE
)
rc=0
$SSH $timeouts "$host" "sh -c $(q "$remote") deploy $(q "$tmp") $(q "${DEPLOY_BIN:-/usr/bin/edged}") \
	$(q "${DEPLOY_CONFIG:-/etc/edged/edged.yaml}") $(q "${DEPLOY_ENV_FILE:-/etc/edged/env}") \
	$(q "${DEPLOY_SERVICE:-edged}") $(q "${DEPLOY_TIMEOUT:-60}") \
	$(q "${DEPLOY_READY_URL-http://127.0.0.1:8080/readyz}") $(q "${DEPLOY_SYSTEMCTL:-systemctl}") \
	$(q "${DEPLOY_LOCK:-/run/lock/edged-deploy.lock}") $(q "${DEPLOY_SETTLE:-5}")" || rc=$?
if [ $rc = 255 ]; then
	# ssh's own failure: the part on the Pi ignores the hangup and
	# finishes the deploy or its rollback without us.
	echo "deploy: lost the connection to $host (ssh exit 255); the deploy goes on there and rolls back if it is not good: check 'systemctl status edged' on the Pi" >&2
	exit 1
fi
exit $rc
