#!/bin/sh
# deploy.sh USER@HOST BINARY: put a new edged binary on a Pi without
# breaking it (`make deploy HOST=pi@raspberrypi.local` builds BINARY and
# runs this).
#
#  1. copy BINARY to a temp file on the Pi (scp);
#  2. run `NEW validate --strict` there against the Pi's config, with the
#     service's secrets (DEPLOY_ENV_FILE): a binary that does not run there
#     or refuses the config is rejected and nothing changes;
#  3. keep the installed binary as BIN.prev and swap the new one in with a
#     rename (atomic: BIN is always a whole binary);
#  4. restart the service and wait up to DEPLOY_TIMEOUT seconds for a new
#     main process that systemd calls active and whose /readyz is 200;
#  5. if it is not ready in time, put BIN.prev back (again by a rename),
#     restart and wait for that: exit 4 (5 if the old one fails too).
#
# Environment (defaults in brackets):
#   DEPLOY_TIMEOUT    seconds to become ready [60]
#   DEPLOY_READY_URL  probed on the Pi with curl or wget
#                     [http://127.0.0.1:8080/readyz]; "" = systemd's
#                     "active" only (edged is Type=notify: READY=1)
#   SSH, SCP          the commands, with options [ssh] [scp]
#   DEPLOY_BIN, DEPLOY_CONFIG, DEPLOY_ENV_FILE, DEPLOY_SERVICE, DEPLOY_SYSTEMCTL
#                     on the Pi [/usr/bin/edged] [/etc/edged/edged.yaml]
#                     [/etc/edged/env] [edged] [systemctl]
# The login user needs sudo without a password (Raspberry Pi OS's pi
# user has it) unless it is root. Exit: 0 deployed, 2 usage, 3 rejected
# before the swap (nothing changed), 4 rolled back, 5 rollback not ready,
# 1 anything else (copy failed, ...).
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 USER@HOST BINARY" >&2
	exit 2
fi
host=$1 binary=$2
[ -f "$binary" ] || { echo "deploy: $binary: no such file" >&2; exit 2; }
SSH=${SSH:-ssh}
SCP=${SCP:-scp}

# q quotes one argument for the remote shell.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

tmp=$($SSH "$host" 'mktemp /tmp/edged-deploy.XXXXXX')
echo "deploy: copying $binary to $host:$tmp" >&2
if ! $SCP -q "$binary" "$host:$tmp"; then
	$SSH "$host" "rm -f $(q "$tmp")" || true
	exit 1
fi

# The rest runs on the Pi, in one session. The script travels in the
# command line, not on stdin, which its commands could read.
remote=$(cat <<'REMOTE'
set -eu
new=$1 bin=$2 conf=$3 envfile=$4 svc=$5 timeout=$6 url=$7 systemctl=$8
# A dropped ssh session (Ctrl-C, a closed lid) must not stop this half
# way with the new binary installed and no rollback: ignore the hangup
# and the broken pipe, and keep going without an audience.
trap '' HUP PIPE INT
say() { echo "deploy: $*" >&2 2>/dev/null || true; }
S=
[ "$(id -u)" = 0 ] || S="sudo -n"
trap 'rm -f "$new"' EXIT
chmod 0755 "$new"

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
say "new binary: $("$new" version)"

mainpid() { $systemctl show -p MainPID --value "$svc" 2>/dev/null || echo 0; }
probe() {
	if [ -z "$url" ]; then return 0; fi
	if command -v curl >/dev/null; then
		curl -fsS -m 2 -o /dev/null "$url" 2>/dev/null
	else
		wget -q -T 2 -O /dev/null "$url" 2>/dev/null
	fi
}
# restart restarts the service and waits for a new main process that is
# active and ready, at most $timeout seconds.
restart() {
	old=$(mainpid)
	$S $systemctl restart --no-block "$svc"
	end=$(($(date +%s) + timeout))
	while [ "$(date +%s)" -lt "$end" ]; do
		pid=$(mainpid)
		if [ "$pid" != 0 ] && [ "$pid" != "$old" ] && $systemctl is-active --quiet "$svc" && probe; then
			return 0
		fi
		sleep 1
	done
	return 1
}
# swap puts $1 at $bin by a rename in the same directory.
swap() {
	$S cp "$1" "$bin.new"
	$S chmod 0755 "$bin.new"
	$S mv -f "$bin.new" "$bin"
}

# 3. Swap, keeping the installed binary.
if [ -f "$bin" ]; then
	$S cp -p "$bin" "$bin.prev"
fi
swap "$new"
say "installed $bin (previous: $bin.prev); restarting $svc, up to ${timeout}s to be ready"

# 4. Restart and wait.
if restart; then
	say "ready: $svc runs the new binary (pid $(mainpid))"
	exit 0
fi

# 5. Roll back.
say "not ready within ${timeout}s; its last words:"
$S $systemctl status --no-pager -n 20 "$svc" >&2 || true
if [ ! -f "$bin.prev" ]; then
	say "no previous binary to roll back to: $bin stays the new one"
	exit 5
fi
say "rolling back to $bin.prev"
swap "$bin.prev"
if restart; then
	say "rolled back: $svc runs the previous binary again (pid $(mainpid))"
	exit 4
fi
say "rolled back, but the previous binary is not ready either: journalctl -u $svc"
exit 5
REMOTE
)
$SSH "$host" "sh -c $(q "$remote") deploy $(q "$tmp") $(q "${DEPLOY_BIN:-/usr/bin/edged}") \
	$(q "${DEPLOY_CONFIG:-/etc/edged/edged.yaml}") $(q "${DEPLOY_ENV_FILE:-/etc/edged/env}") \
	$(q "${DEPLOY_SERVICE:-edged}") $(q "${DEPLOY_TIMEOUT:-60}") \
	$(q "${DEPLOY_READY_URL-http://127.0.0.1:8080/readyz}") $(q "${DEPLOY_SYSTEMCTL:-systemctl}")"
