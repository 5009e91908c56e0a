#!/usr/bin/env bash
# Start a private, loopback-only mail stack for tests and benchmarks:
#   Dovecot  IMAP 127.0.0.1:1143 (plain + STARTTLS), IMAPS :1993,
#            LMTP unix socket DIR/run/dovecot/lmtp and 127.0.0.1:1024
#   Postfix  SMTP 127.0.0.1:2525 (no auth needed from loopback; STARTTLS and
#            AUTH offered), submission :1587 (STARTTLS + AUTH required),
#            SMTPS :1465 (implicit TLS + AUTH required)
#            example.org users -> Dovecot LMTP; every other domain is KEPT in
#            the catchall@example.org mailbox (MAILSTACK_FOREIGN=discard
#            drops it instead; MAILSTACK_FOREIGN=maildir has Postfix's own
#            virtual(8) agent write it to DIR/mail/foreign/Maildir, which also
#            takes SMTPUTF8 mail: Dovecot 2.3's LMTP does not offer SMTPUTF8,
#            so Postfix bounces such mail on its way to catchall).
#            Postfix has no smtp client: nothing is relayed.
#   smtp-sink 127.0.0.1:2526 (accepts and throws away everything)
#
# Usage: start.sh [DIR] [--fresh]      DIR defaults to $OUTREACH_MAILSTACK_DIR or /tmp/outreach-mailstack
#   --fresh   wipe mailboxes, the Postfix queue and the logs before starting
# Nothing outside DIR is written (except the Debian packages, installed by
# install.sh if missing). Uses no system config and no systemd. Run as root.
# Ports/users can be overridden with the MAILSTACK_* variables below;
# MAILSTACK_IMAP_CAPABILITY="IMAP4rev1 IDLE ..." replaces the IMAP capabilities
# Dovecot announces after login (e.g. a server without MOVE and UIDPLUS).
# Writes DIR/mailstack.env (ports, users, password, CA file) for tests.
set -euo pipefail
# The servers started here run on after this script: they must not inherit a descriptor
# of whoever called it (a lock such as `flock FILE bash start.sh` would be held forever).
for fd in 3 4 5 6 7 8 9; do
    eval "exec $fd>&-" 2>/dev/null || true
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

DIR=${OUTREACH_MAILSTACK_DIR:-/tmp/outreach-mailstack}
FRESH=0
for a in "$@"; do
    case "$a" in
        --fresh) FRESH=1 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
        -*) echo "unknown option $a" >&2; exit 2 ;;
        *) DIR=$a ;;
    esac
done
DIR=$(realpath -m "$DIR")

IMAP_PORT=${MAILSTACK_IMAP_PORT:-1143}
IMAPS_PORT=${MAILSTACK_IMAPS_PORT:-1993}
LMTP_PORT=${MAILSTACK_LMTP_PORT:-1024}
SMTP_PORT=${MAILSTACK_SMTP_PORT:-2525}
SUBMISSION_PORT=${MAILSTACK_SUBMISSION_PORT:-1587}
SMTPS_PORT=${MAILSTACK_SMTPS_PORT:-1465}
SINK_PORT=${MAILSTACK_SINK_PORT:-2526}
DOMAIN=${MAILSTACK_DOMAIN:-example.org}
USERS=${MAILSTACK_USERS:-contact alice bob coordinator catchall}
PASSWORD=${MAILSTACK_PASSWORD:-secret}
FOREIGN=${MAILSTACK_FOREIGN:-keep}          # keep | discard
SEPARATOR=${MAILSTACK_IMAP_SEPARATOR:-.}    # IMAP hierarchy separator
FSYNC=${MAILSTACK_FSYNC:-optimized}         # Dovecot mail_fsync: optimized | always | never
MAILUSER=${MAILSTACK_MAIL_USER:-mail}       # uid that owns the Maildirs
# Dovecot's imap_capability after login; empty keeps Dovecot's full list. Tests of a
# server without MOVE or UIDPLUS set a list without them.
IMAP_CAPABILITY=${MAILSTACK_IMAP_CAPABILITY:-}
HOST=127.0.0.1

T0=$(date +%s%N)
STARTED=0
log() { printf 'mailstack: %s\n' "$*"; }
die() { printf 'mailstack: ERROR: %s\n' "$*" >&2; exit 1; }
# A failure after the first daemon started must not leave half a stack.
trap 'rc=$?; if [ "$rc" != 0 ] && [ "$STARTED" = 1 ]; then bash "$HERE/stop.sh" "$DIR" >&2; fi' EXIT

[ "$(id -u)" = 0 ] || die "run as root (Dovecot/Postfix drop privileges themselves)"
case "$FOREIGN" in keep|discard|maildir) ;; *) die "MAILSTACK_FOREIGN must be keep, discard or maildir" ;; esac
case "$FSYNC" in optimized|always|never) ;; *) die "MAILSTACK_FSYNC must be optimized, always or never" ;; esac
case " $USERS " in *" catchall "*) ;; *) [ "$FOREIGN" = discard ] || die "MAILSTACK_USERS must contain catchall unless MAILSTACK_FOREIGN=discard" ;; esac

if ! command -v dovecot >/dev/null || ! command -v postfix >/dev/null \
   || ! command -v smtp-sink >/dev/null || [ ! -x /usr/lib/dovecot/lmtp ]; then
    [ "${MAILSTACK_NO_INSTALL:-0}" = 1 ] && die "dovecot/postfix missing and MAILSTACK_NO_INSTALL=1"
    bash "$HERE/install.sh"
fi
for u in "$MAILUSER" postfix dovecot dovenull nobody; do
    getent passwd "$u" >/dev/null || die "system user $u missing (package install incomplete?)"
done

ETC=$DIR/etc
RUN=$DIR/run
PIDS=$RUN/pids
LOGD=$DIR/log
DOVE_BASE=$RUN/dovecot
PF_CONF=$ETC/postfix
PF_QUEUE=$DIR/postfix/spool
PF_DATA=$DIR/postfix/data
MAILROOT=$DIR/mail
TLS=$ETC/tls

# ---------------------------------------------------------------- running?
alive() {  # alive NAME PATTERN: pid file exists, process alive, cmdline matches
    local f=$PIDS/$1.pid pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [ -d "/proc/$pid" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}
if [ -d "$PIDS" ]; then
    n=0
    alive dovecot dovecot && n=$((n+1))
    alive postfix master && n=$((n+1))
    alive smtp-sink smtp-sink && n=$((n+1))
    if [ "$n" = 3 ] && [ "$FRESH" = 0 ]; then
        log "already running in $DIR (use stop.sh first, or --fresh to restart clean)"
        cat "$DIR/mailstack.env"
        exit 0
    fi
    if [ "$n" -gt 0 ]; then
        log "partially running or --fresh: stopping first"
    fi
    # Always clear leftovers of an earlier run (stale pid files, stray procs).
    bash "$HERE/stop.sh" "$DIR" >/dev/null || true
fi

# ---------------------------------------------------------------- ports free?
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
ALL_PORTS="$IMAP_PORT $IMAPS_PORT $LMTP_PORT $SMTP_PORT $SUBMISSION_PORT $SMTPS_PORT $SINK_PORT"
for p in $ALL_PORTS; do
    [[ "$p" =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || die "bad port '$p'"
    port_busy "$p" && die "port $HOST:$p already in use by another process"
done
[ "$(printf '%s\n' $ALL_PORTS | sort -u | wc -l)" = 7 ] || die "the seven ports must differ: $ALL_PORTS"

# ---------------------------------------------------------------- layout
# The daemons (mail, postfix, dovecot, dovenull) must be able to search every
# parent of DIR.
p=$DIR
while [ "$p" != / ]; do
    p=$(dirname "$p")
    [ -d "$p" ] || continue
    perm=$(stat -c %A "$p")
    [ "${perm:9:1}" = x ] || [ "${perm:9:1}" = t ] || die "$p is not world-searchable; pick a DIR like /tmp/mailstack"
done
if [ "$FRESH" = 1 ]; then
    rm -rf "$MAILROOT" "$DIR/postfix" "$LOGD"
fi
mkdir -p "$DIR"
# Every daemon user (mail, postfix, dovecot, dovenull) must traverse DIR.
chmod 755 "$DIR"
dirs=(
    "$ETC" "$ETC/dovecot" "$PF_CONF" "$TLS" "$RUN" "$PIDS" "$LOGD"
    "$DIR/postfix" "$PF_QUEUE" "$PF_DATA" "$MAILROOT"
)
for d in "${dirs[@]}"; do mkdir -p "$d"; chmod 755 "$d"; done
chown "$MAILUSER:$MAILUSER" "$MAILROOT"; chmod 750 "$MAILROOT"
chown postfix:postfix "$PF_DATA"
chown root:root "$PF_QUEUE"
rm -f "$PIDS"/*.pid
# Stale sockets from an earlier run make Dovecot clients retry connect() on
# ECONNREFUSED for 5 s (seen with anvil-auth-penalty): start from a clean
# base_dir. Nothing of ours is running at this point.
rm -rf "$DOVE_BASE"

MAIL_UID=$(id -u "$MAILUSER"); MAIL_GID=$(id -g "$MAILUSER")

# ---------------------------------------------------------------- TLS
# A throwaway CA plus a leaf for localhost/127.0.0.1/::1 (CA:FALSE, so that
# rustls/webpki accept it once ca.crt is trusted). Kept across restarts.
if [ ! -s "$TLS/server.crt" ] || [ ! -s "$TLS/ca.crt" ] || [ ! -s "$TLS/dh.pem" ]; then
    (
        cd "$TLS"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.crt -days 3650 -subj "/CN=mailstack test CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
        printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
            'keyUsage=critical,digitalSignature,keyEncipherment' \
            'extendedKeyUsage=serverAuth' \
            'subjectAltName=DNS:localhost,DNS:mail.example.org,IP:127.0.0.1,IP:::1' >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out server.crt -days 3650 -extfile server.ext 2>/dev/null
        # Standard RFC 7919 group: instant, unlike "openssl dhparam 2048".
        openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out dh.pem 2>/dev/null
        rm -f server.csr server.ext ca.srl
    )
fi
chmod 644 "$TLS"/*.crt "$TLS/dh.pem"; chmod 600 "$TLS"/*.key
cat "$TLS/server.crt" "$TLS/ca.crt" >"$TLS/chain.crt"

# ---------------------------------------------------------------- users
: >"$ETC/dovecot/users.new"
: >"$PF_CONF/vmailbox.new"
for u in $USERS; do
    printf '%s@%s:{PLAIN}%s::::::\n' "$u" "$DOMAIN" "$PASSWORD" >>"$ETC/dovecot/users.new"
    printf '%s@%s OK\n' "$u" "$DOMAIN" >>"$PF_CONF/vmailbox.new"
done
mv "$ETC/dovecot/users.new" "$ETC/dovecot/users"
mv "$PF_CONF/vmailbox.new" "$PF_CONF/vmailbox"
chown root:dovecot "$ETC/dovecot/users"; chmod 640 "$ETC/dovecot/users"

# IPv6 loopback when the kernel has it (clients resolving "localhost" to ::1).
V6=0
if grep -q '^00000000000000000000000000000001 .* lo$' /proc/net/if_inet6 2>/dev/null \
   && [ "${MAILSTACK_IPV6:-auto}" != 0 ]; then V6=1; fi
if [ "$V6" = 1 ]; then DOVE_LISTEN="127.0.0.1, ::1"; else DOVE_LISTEN="127.0.0.1"; fi

# ---------------------------------------------------------------- dovecot
cat >"$ETC/dovecot/dovecot.conf" <<EOF
# Generated by mailstack/start.sh - private instance, no system config used.
instance_name = mailstack-$(printf '%s' "$DIR" | md5sum | cut -c1-8)
base_dir = $DOVE_BASE
state_dir = $DIR/dovecot-state
protocols = imap lmtp
listen = $DOVE_LISTEN
log_path = $LOGD/dovecot.log
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes
verbose_proctitle = yes
hostname = mailstack.localhost
shutdown_clients = yes

ssl = yes
ssl_cert = <$TLS/server.crt
ssl_key = <$TLS/server.key
ssl_dh = <$TLS/dh.pem
# Plaintext LOGIN/AUTHENTICATE allowed without TLS (loopback test stack).
disable_plaintext_auth = no
auth_mechanisms = plain login
# Real servers sleep 2 s after a failed login; tests do not want to wait.
auth_failure_delay = 0

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu $ETC/dovecot/users
}
userdb {
  driver = passwd-file
  args = username_format=%Lu $ETC/dovecot/users
  default_fields = uid=$MAIL_UID gid=$MAIL_GID home=$MAILROOT/%Ld/%Ln
}
first_valid_uid = $MAIL_UID
last_valid_uid = $MAIL_UID
first_valid_gid = $MAIL_GID
last_valid_gid = $MAIL_GID
mail_location = maildir:~/Maildir
mail_fsync = $FSYNC
mail_privileged_group =
recipient_delimiter = +

namespace inbox {
  inbox = yes
  separator = $SEPARATOR
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Archive {
    special_use = \\Archive
    auto = subscribe
  }
}

protocol imap {
  # Default is 10 per user+IP: tests/benches open many from 127.0.0.1.
  mail_max_userip_connections = 512
${IMAP_CAPABILITY:+  imap_capability = $IMAP_CAPABILITY}
}
protocol lmtp {
  postmaster_address = postmaster@$DOMAIN
}

service imap-login {
  inet_listener imap {
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = $IMAPS_PORT
    ssl = yes
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
service auth {
  # SASL for Postfix smtpd (AUTH on 2525/1587/1465).
  unix_listener auth-postfix {
    mode = 0660
    user = postfix
    group = postfix
  }
}
# Dovecot's anvil "auth penalty" delays EVERY login from an IP by 2..15 s
# after one failed login from it (auth_failure_delay does not cover it).
# From 127.0.0.1 that would stall the whole test suite after one
# wrong-password test. mode 0 = no socket, auth gets ENOENT = penalty off.
# (A STALE socket file instead gives ECONNREFUSED, retried for 5 s: hence the
# rm -rf of base_dir above.)
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
# Not used by the stack; keep them off the network.
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = 0
  }
}
EOF

# ---------------------------------------------------------------- postfix
if [ "$V6" = 1 ]; then
    PF_PROTO=all; PF_IFACES="127.0.0.1, [::1]"; PF_NETS="127.0.0.0/8 [::1]/128"
    PF_ADDRS="127.0.0.1 [::1]"
else
    PF_PROTO=ipv4; PF_IFACES="127.0.0.1"; PF_NETS="127.0.0.0/8"; PF_ADDRS="127.0.0.1"
fi
if [ "$FOREIGN" = keep ]; then
    # POSIX regexp, "!" = does not match: every non-$DOMAIN recipient is
    # rewritten (envelope only; headers untouched) to catchall@$DOMAIN.
    printf '!/@%s$/ catchall@%s\n' "${DOMAIN//./\\.}" "$DOMAIN" >"$PF_CONF/foreign"
    # virtual_alias_domains defaults to \$virtual_alias_maps: without the
    # empty setting example.org becomes an alias domain and every real user
    # is rejected "User unknown in virtual alias table".
    FOREIGN_CF="virtual_alias_domains =
virtual_alias_maps = regexp:$PF_CONF/foreign
default_transport = error:5.7.1 mailstack never relays
relay_transport = error:5.7.1 mailstack never relays"
elif [ "$FOREIGN" = maildir ]; then
    # Every non-$DOMAIN recipient goes to the "foreign" transport (master.cf): the
    # virtual(8) agent, writing DIR/mail/foreign/Maildir/ as the mail user.
    printf '/./ foreign/Maildir/\n' >"$PF_CONF/foreign"
    FOREIGN_CF="virtual_alias_domains =
virtual_alias_maps =
default_transport = foreign
relay_transport = foreign"
else
    FOREIGN_CF="virtual_alias_domains =
virtual_alias_maps =
default_transport = discard:mailstack discards foreign mail
relay_transport = discard:mailstack discards foreign mail"
fi

# Recipient domains whose mail the stack refuses, for tests of retries and failures.
cat >"$PF_CONF/recipient_access" <<EOF
tempfail.test 451 4.3.0 mailstack: temporary failure for tests
rejected.test 550 5.7.1 mailstack: rejected for tests
EOF

cat >"$PF_CONF/main.cf" <<EOF
# Generated by mailstack/start.sh - private instance, no system config used.
compatibility_level = 3.6
config_directory = $PF_CONF
queue_directory = $PF_QUEUE
data_directory = $PF_DATA
# meta_directory, daemon_directory, command_directory: Debian package defaults.
mail_owner = postfix
setgid_group = postdrop
myhostname = mailstack.localhost
mydomain = localhost
myorigin = \$myhostname
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 no local delivery in mailstack
alias_maps =
alias_database =
inet_interfaces = $PF_IFACES
inet_protocols = $PF_PROTO
mynetworks = $PF_NETS
biff = no
append_dot_mydomain = no
readme_directory = no
recipient_delimiter = +
message_size_limit = 52428800
smtpd_banner = \$myhostname ESMTP mailstack
# Logging without syslog: postlogd writes this file.
maillog_file = $LOGD/postfix.log
maillog_file_prefixes = $LOGD

virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$PF_CONF/vmailbox
virtual_transport = lmtp:unix:$DOVE_BASE/lmtp
$FOREIGN_CF

smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
# Test domains that answer 4xx / 5xx at RCPT (see recipient_access).
smtpd_recipient_restrictions = check_recipient_access texthash:$PF_CONF/recipient_access
smtpd_sasl_type = dovecot
smtpd_sasl_path = $DOVE_BASE/auth-postfix
smtpd_sasl_auth_enable = yes
smtpd_tls_auth_only = no
smtpd_tls_security_level = may
smtpd_tls_chain_files = $TLS/server.key, $TLS/chain.crt
smtpd_tls_loglevel = 0
# Tests hit the server hard from one IP; no anvil rate limits.
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
# Do not hold mail in the queue longer than a test run cares about.
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
# Retry deferred mail within seconds (tests restart Dovecot and Postfix mid-run).
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
# smtpd exits when Dovecot's auth socket is away (a Dovecot restart); do not stop
# accepting mail for the default 60 s after that.
service_throttle_time = 1s
EOF

SUBM_OPTS="-o smtpd_sasl_auth_enable=yes -o smtpd_client_restrictions=permit_sasl_authenticated,reject -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"
{
    echo "# Generated by mailstack/start.sh. No chroot (column 5 = n) anywhere."
    echo "# No smtp/relay client service: this instance cannot send off-box."
    for a in $PF_ADDRS; do
        echo "$a:$SMTP_PORT inet n - n - - smtpd"
        echo "$a:$SUBMISSION_PORT inet n - n - - smtpd -o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt -o smtpd_tls_auth_only=yes $SUBM_OPTS"
        echo "$a:$SMTPS_PORT inet n - n - - smtpd -o syslog_name=postfix/smtps -o smtpd_tls_wrappermode=yes $SUBM_OPTS"
    done
    cat <<'EOF'
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    if [ "$FOREIGN" = maildir ]; then
        echo "foreign   unix  -       n       n       -       -       virtual -o virtual_mailbox_maps=regexp:$PF_CONF/foreign -o virtual_mailbox_base=$MAILROOT -o virtual_uid_maps=static:$MAIL_UID -o virtual_gid_maps=static:$MAIL_GID -o virtual_minimum_uid=1 -o virtual_mailbox_limit=0"
    fi
} >"$PF_CONF/master.cf"
chmod 644 "$PF_CONF"/*

# ---------------------------------------------------------------- start
STARTED=1
: >>"$LOGD/dovecot.log"
dovecot -c "$ETC/dovecot/dovecot.conf" </dev/null >>"$LOGD/dovecot.stderr" 2>&1 || { tail -n 20 "$LOGD/dovecot.log" >&2; die "dovecot failed to start"; }

export MAIL_CONFIG=$PF_CONF
# "postfix start" runs postfix-script check-fatal, which creates the missing
# queue directories (post-install create-missing) under $PF_QUEUE with the
# right owners, then starts master. ("postfix set-permissions" is avoided:
# it also re-chmods the system's Postfix binaries.) MAIL_CONFIG makes every
# helper (postsuper, postconf, ...) read our main.cf.
postfix -c "$PF_CONF" start </dev/null >"$LOGD/postfix-setup.log" 2>&1 || { cat "$LOGD/postfix-setup.log" >&2; die "postfix failed to start"; }

# bash records its own pid, then exec keeps it: the pid file is exact even if
# setsid forks. setsid: not killed with the caller's process group.
# -a: do not announce AUTH. smtp-sink answers AUTH with "250 Ok" instead of
# "235", which clients (Python smtplib, at least) treat as a failed login.
# The sink has no TLS either: point a sender at it in plain, no-auth mode.
setsid bash -c 'echo $$ >"$0"; exec smtp-sink -a -u nobody -4 "$1" 1024' \
    "$PIDS/smtp-sink.pid" "$HOST:$SINK_PORT" </dev/null >>"$LOGD/smtp-sink.log" 2>&1 &

# ---------------------------------------------------------------- wait ready
banner() {  # banner PORT EXPECT: connect and read the greeting
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1 && head -n 1 <&3" 2>/dev/null | grep -q "$2"
}
deadline=$(( $(date +%s) + 25 ))
while :; do
    ok=1
    banner "$IMAP_PORT" '^\* OK' || ok=0
    banner "$SMTP_PORT" '^220' || ok=0
    banner "$SINK_PORT" '^220' || ok=0
    port_busy "$IMAPS_PORT" || ok=0
    port_busy "$LMTP_PORT" || ok=0
    [ -S "$DOVE_BASE/lmtp" ] || ok=0
    [ -S "$DOVE_BASE/auth-postfix" ] || ok=0
    [ -s "$DOVE_BASE/master.pid" ] || ok=0
    [ -s "$PF_QUEUE/pid/master.pid" ] || ok=0
    [ "$ok" = 1 ] && break
    [ "$(date +%s)" -lt "$deadline" ] || {
        tail -n 20 "$LOGD/dovecot.log" "$LOGD/postfix.log" "$LOGD/smtp-sink.log" >&2 || true
        die "stack not ready after 25 s"
    }
    sleep 0.2
done
cp "$DOVE_BASE/master.pid" "$PIDS/dovecot.pid"
tr -d ' ' <"$PF_QUEUE/pid/master.pid" >"$PIDS/postfix.pid"

cat >"$DIR/mailstack.env" <<EOF
MAILSTACK_DIR=$DIR
MAILSTACK_HOST=$HOST
MAILSTACK_IMAP_PORT=$IMAP_PORT
MAILSTACK_IMAPS_PORT=$IMAPS_PORT
MAILSTACK_LMTP_PORT=$LMTP_PORT
MAILSTACK_LMTP_SOCKET=$DOVE_BASE/lmtp
MAILSTACK_SMTP_PORT=$SMTP_PORT
MAILSTACK_SUBMISSION_PORT=$SUBMISSION_PORT
MAILSTACK_SMTPS_PORT=$SMTPS_PORT
MAILSTACK_SINK_PORT=$SINK_PORT
MAILSTACK_DOMAIN=$DOMAIN
MAILSTACK_USERS="$(for u in $USERS; do printf '%s@%s ' "$u" "$DOMAIN"; done | sed 's/ $//')"
MAILSTACK_PASSWORD=$PASSWORD
MAILSTACK_FOREIGN=$FOREIGN
MAILSTACK_CA_CERT=$TLS/ca.crt
MAILSTACK_IMAP_CAPABILITY="$IMAP_CAPABILITY"
EOF

log "started in $DIR ($(( ($(date +%s%N) - T0) / 1000000 )) ms)"
log "  IMAP       $HOST:$IMAP_PORT (plain login ok, STARTTLS offered)"
log "  IMAPS      $HOST:$IMAPS_PORT"
log "  LMTP       $HOST:$LMTP_PORT and unix:$DOVE_BASE/lmtp"
log "  SMTP       $HOST:$SMTP_PORT (open to loopback, STARTTLS/AUTH offered)"
log "  submission $HOST:$SUBMISSION_PORT (STARTTLS + AUTH required)"
log "  SMTPS      $HOST:$SMTPS_PORT (implicit TLS + AUTH required)"
log "  smtp-sink  $HOST:$SINK_PORT (discards everything; no TLS, no AUTH)"
log "  users      $(for u in $USERS; do printf '%s@%s ' "$u" "$DOMAIN"; done)/ password '$PASSWORD'"
log "  foreign-domain mail: $FOREIGN$([ "$FOREIGN" = keep ] && echo " (in catchall@$DOMAIN)")$([ "$FOREIGN" = maildir ] && echo " (in $MAILROOT/foreign/Maildir)")"
[ -z "$IMAP_CAPABILITY" ] || log "  IMAP capabilities after login: $IMAP_CAPABILITY"
log "  CA cert    $TLS/ca.crt    env file $DIR/mailstack.env"
log "  pids       dovecot=$(cat "$PIDS/dovecot.pid") postfix=$(cat "$PIDS/postfix.pid") smtp-sink=$(cat "$PIDS/smtp-sink.pid")"
