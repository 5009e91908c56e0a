#!/usr/bin/env bash
# Stop the mail stack that start.sh started in DIR (default /tmp/mailstack).
# Only the recorded processes (and their children) are signalled, each by PID
# and only after checking that the PID still is the process start.sh started
# (Dovecot's command line names DIR's config, Postfix's master carries
# MAIL_CONFIG=DIR/etc/postfix in its environment, smtp-sink its port).
# Mailboxes and logs stay in DIR; remove DIR to clean up completely.
set -uo pipefail

DIR=$(realpath -m "${1:-${OUTREACH_MAILSTACK_DIR:-/tmp/outreach-mailstack}}")
PIDS=$DIR/run/pids
log() { printf 'mailstack: %s\n' "$*"; }

# descendants PID: all live descendants of PID, one per line.
descendants() {
    ps -eo pid=,ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END {
            n = split(kids[root], q, " ")
            for (i = 1; i <= n; i++) {
                print q[i]
                m = split(kids[q[i]], more, " ")
                for (j = 1; j <= m; j++) q[++n] = more[j]
            }
        }'
}

# is_ours KIND PID
is_ours() {
    local kind=$1 pid=$2 cmd
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
    case "$kind" in
        dovecot) [[ "$cmd" == *dovecot*"$DIR/etc/dovecot/dovecot.conf"* ]] ;;
        postfix) [[ "$cmd" == *master* ]] && tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "MAIL_CONFIG=$DIR/etc/postfix" ;;
        smtp-sink)
            [[ "$cmd" == *smtp-sink* ]] || return 1
            local port
            port=$(sed -n 's/^MAILSTACK_SINK_PORT=//p' "$DIR/mailstack.env" 2>/dev/null)
            [ -z "$port" ] || [[ "$cmd" == *":$port "* ]] ;;
        *) return 1 ;;
    esac
}

# wait_gone SECONDS PID...: wait until none of the PIDs is alive.
wait_gone() {
    local t=$(( $1 * 10 )) p alive
    shift
    while [ "$t" -gt 0 ]; do
        alive=0
        for p in "$@"; do [ -d "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && alive=1; done
        [ "$alive" = 0 ] && return 0
        sleep 0.1; t=$((t-1))
    done
    return 1
}

stop_one() {  # stop_one KIND PID
    local kind=$1 pid=$2 kids
    kids=$(descendants "$pid" | tr '\n' ' ')
    case "$kind" in
        postfix) MAIL_CONFIG=$DIR/etc/postfix postfix -c "$DIR/etc/postfix" stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null ;;
        *) kill -TERM "$pid" 2>/dev/null ;;
    esac
    # shellcheck disable=SC2086
    if ! wait_gone 10 "$pid" $kids; then
        log "$kind did not exit in 10 s, sending KILL"
        for p in $pid $kids; do [ -d "/proc/$p" ] && kill -KILL "$p" 2>/dev/null; done
        # shellcheck disable=SC2086
        wait_gone 5 "$pid" $kids
    fi
    log "stopped $kind (pid $pid${kids:+, children $kids})"
}

stopped=0
for kind in smtp-sink postfix dovecot; do
    cands=()
    [ -s "$PIDS/$kind.pid" ] && cands+=("$(tr -d ' \n' <"$PIDS/$kind.pid")")
    # Also the daemons' own pid files, in case start.sh died before recording.
    case "$kind" in
        dovecot) [ -s "$DIR/run/dovecot/master.pid" ] && cands+=("$(tr -d ' \n' <"$DIR/run/dovecot/master.pid")") ;;
        postfix) [ -s "$DIR/postfix/spool/pid/master.pid" ] && cands+=("$(tr -d ' \n' <"$DIR/postfix/spool/pid/master.pid")") ;;
    esac
    done_pid=
    for pid in "${cands[@]}"; do
        [ "$pid" = "$done_pid" ] && continue
        if is_ours "$kind" "$pid"; then
            stop_one "$kind" "$pid"; stopped=$((stopped+1)); done_pid=$pid
        fi
    done
    rm -f "$PIDS/$kind.pid"
done
[ "$stopped" = 0 ] && log "nothing running in $DIR"
exit 0
