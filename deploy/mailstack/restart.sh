#!/usr/bin/env bash
# Stop or start one server of the stack that start.sh started in DIR, leaving the rest
# running. For tests that take a server away mid-run and bring it back.
#   restart.sh DIR imap|smtp stop|start|restart
set -euo pipefail
DIR=$(realpath -m "${1:?usage: restart.sh DIR imap|smtp stop|start|restart}")
WHAT=${2:?imap or smtp}
ACTION=${3:-restart}
[ -s "$DIR/mailstack.env" ] || { echo "restart.sh: no stack in $DIR (run start.sh first)" >&2; exit 1; }
ETC=$DIR/etc
LOGD=$DIR/log
PIDS=$DIR/run/pids

wait_port() {  # wait_port PORT up|down
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            if [ "$2" = up ]; then return 0; fi
        elif [ "$2" = down ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "restart.sh: port $1 not $2 after 10 s" >&2
    return 1
}
# shellcheck disable=SC1091
. "$DIR/mailstack.env"

case "$WHAT" in
imap)
    stop() {
        local pid kids
        pid=$(cat "$DIR/run/dovecot/master.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
            # Per-connection imap processes outlive the master; a real restart drops
            # every client, so end them too.
            kids=$(ps -eo pid=,ppid= | awk -v p="$pid" '$2 == p { print $1 }')
            dovecot -c "$ETC/dovecot/dovecot.conf" stop >/dev/null 2>&1 || kill -TERM "$pid"
            # shellcheck disable=SC2086
            [ -z "$kids" ] || kill -TERM $kids 2>/dev/null || true
        fi
        wait_port "$MAILSTACK_IMAP_PORT" down
        # Give the master a moment to remove its pid file and sockets.
        for _ in $(seq 1 50); do [ -d "/proc/${pid:-0}" ] || break; sleep 0.1; done
    }
    start() {
        if (exec 3<>"/dev/tcp/127.0.0.1/$MAILSTACK_IMAP_PORT") 2>/dev/null; then return 0; fi
        dovecot -c "$ETC/dovecot/dovecot.conf" </dev/null >>"$LOGD/dovecot.stderr" 2>&1
        wait_port "$MAILSTACK_IMAP_PORT" up
        for _ in $(seq 1 50); do [ -s "$DIR/run/dovecot/master.pid" ] && break; sleep 0.1; done
        cp "$DIR/run/dovecot/master.pid" "$PIDS/dovecot.pid"
        # Mail deferred while Dovecot was away: deliver it now.
        MAIL_CONFIG=$ETC/postfix postqueue -c "$ETC/postfix" -f 2>/dev/null || true
    }
    ;;
smtp)
    stop() {
        (exec 3<>"/dev/tcp/127.0.0.1/$MAILSTACK_SMTP_PORT") 2>/dev/null || return 0
        MAIL_CONFIG=$ETC/postfix postfix -c "$ETC/postfix" stop >/dev/null 2>&1 || true
        wait_port "$MAILSTACK_SMTP_PORT" down
    }
    start() {
        if (exec 3<>"/dev/tcp/127.0.0.1/$MAILSTACK_SMTP_PORT") 2>/dev/null; then return 0; fi
        MAIL_CONFIG=$ETC/postfix postfix -c "$ETC/postfix" start </dev/null >>"$LOGD/postfix-setup.log" 2>&1
        wait_port "$MAILSTACK_SMTP_PORT" up
        for _ in $(seq 1 50); do [ -s "$DIR/postfix/spool/pid/master.pid" ] && break; sleep 0.1; done
        tr -d ' ' <"$DIR/postfix/spool/pid/master.pid" >"$PIDS/postfix.pid"
    }
    ;;
*) echo "restart.sh: expected imap or smtp, got $WHAT" >&2; exit 2 ;;
esac

case "$ACTION" in
stop) stop ;;
start) start ;;
restart) stop; start ;;
*) echo "restart.sh: expected stop, start or restart, got $ACTION" >&2; exit 2 ;;
esac
echo "restart.sh: $WHAT $ACTION done"
