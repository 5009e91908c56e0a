//! The quieter faults of months of unattended running: an IMAP server without MOVE or
//! UIDPLUS, the watched mailbox recreated under the daemon (a new UIDVALIDITY), and the
//! disk under the database filling up. Each against the real Dovecot and Postfix; the
//! server without MOVE is a second stack of this test's own, on other ports.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::{SmtpTransport, Transport};
use outreach::inbox::parse::{ParsedMail, parse};

use crate::helpers::{
    Daemon, TestApp, append, count, fetch_all, fresh, imap, imap_at, mail, parsed, send_raw, serial, stack,
    wait_delivered, wait_delivered_in,
};

const T: Duration = Duration::from_secs(30);

/// Waits until `f` holds, failing with `what` (and the daemon's log) after `timeout`.
fn wait_for(what: &str, timeout: Duration, d: &Daemon, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}\nlog:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many of `mails` answer the mail with this Message-ID (by In-Reply-To).
fn replies_to(mails: &[ParsedMail], id: &str) -> usize {
    mails.iter().filter(|m| m.in_reply_to.iter().any(|r| r == id)).count()
}

/// A mail from `sender` (a stranger at a test domain: the reply lands in catchall@).
fn question(sender: &str, subject: &str) -> (String, Vec<u8>) {
    mail(sender, subject, "Hallo,\n\nHoe kan ik ouders beter betrekken bij de school?\n\nGroet", &[])
}

// ------------------------------------------------------------------ a second stack

/// Ports of the second stack (the shared one keeps the defaults).
const OWN_PORTS: [(&str, u16); 7] = [
    ("MAILSTACK_IMAP_PORT", 31143),
    ("MAILSTACK_IMAPS_PORT", 31993),
    ("MAILSTACK_LMTP_PORT", 31024),
    ("MAILSTACK_SMTP_PORT", 32525),
    ("MAILSTACK_SUBMISSION_PORT", 31587),
    ("MAILSTACK_SMTPS_PORT", 31465),
    ("MAILSTACK_SINK_PORT", 32526),
];

/// Dovecot 2.3's capabilities after login, less MOVE and UIDPLUS.
const CAPABILITIES_WITHOUT_MOVE: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY \
    THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN \
    NAMESPACE LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH \
    LIST-STATUS BINARY SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE";

/// A mail stack of this test's own (`deploy/mailstack/start.sh` in its own folder, on
/// [`OWN_PORTS`]), stopped when dropped. The shared stack is never touched.
struct OwnStack {
    dir: PathBuf,
    imap: u16,
    smtp: u16,
}

impl OwnStack {
    fn start(name: &str, capabilities: &str) -> Self {
        let dir = PathBuf::from(format!("/tmp/outreach-it-{name}"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mailstack/start.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(&dir)
            .arg("--fresh")
            .envs(OWN_PORTS.iter().map(|(k, v)| (*k, v.to_string())))
            .env("MAILSTACK_IMAP_CAPABILITY", capabilities)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "second stack did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir, imap: OWN_PORTS[0].1, smtp: OWN_PORTS[3].1 }
    }

    fn send(&self, sender: &str, raw: &[u8]) {
        let t = SmtpTransport::builder_dangerous("127.0.0.1").port(self.smtp).build();
        let env = Envelope::new(Some(sender.parse().unwrap()), vec!["contact@example.org".parse().unwrap()]).unwrap();
        t.send_raw(&env, raw).expect("SMTP send to the second stack");
    }

    fn session(&self, user: &str) -> imap::Session<Box<dyn imap::ImapConnection>> {
        imap_at(self.imap, user)
    }

    /// Every message in `user`'s folders, by folder.
    fn folders(&self, user: &str) -> Vec<(String, Vec<ParsedMail>)> {
        let mut s = self.session(user);
        let names: Vec<String> = s.list(None, Some("*")).unwrap().iter().map(|n| n.name().to_string()).collect();
        let mut out = Vec::new();
        for n in names {
            let mb = s.examine(&n).unwrap();
            let mails = if mb.exists > 0 {
                s.fetch("1:*", "BODY.PEEK[]")
                    .unwrap()
                    .iter()
                    .filter_map(|f| f.body().map(|b| parse(b).expect("parse")))
                    .collect()
            } else {
                Vec::new()
            };
            out.push((n, mails));
        }
        let _ = s.logout();
        out
    }

    fn inbox(&self, user: &str) -> Vec<ParsedMail> {
        self.folders(user).into_iter().find(|(n, _)| n == "INBOX").map(|(_, m)| m).unwrap_or_default()
    }

    /// The flags of each message in contact@'s INBOX, by Message-ID.
    fn inbox_flags(&self) -> Vec<(String, bool)> {
        let mut s = self.session("contact");
        s.examine("INBOX").unwrap();
        let out = s
            .fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            .map(|fs| {
                fs.iter()
                    .map(|f| {
                        let id = String::from_utf8_lossy(f.header().unwrap_or_default()).trim().to_string();
                        (id, f.flags().iter().any(|x| matches!(x, imap::types::Flag::Deleted)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = s.logout();
        out
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mailstack/stop.sh");
        let _ = Command::new("bash").arg(script).arg(&self.dir).output();
    }
}

// ------------------------------------------------------------------ without MOVE

#[test]
fn without_move_or_uidplus_each_mail_is_copied_once_answered_once_and_the_inbox_emptied() {
    files_each_mail_once_without_move(false);
}

#[test]
fn without_move_but_with_uidplus_each_mail_is_copied_once_answered_once_and_the_inbox_emptied() {
    files_each_mail_once_without_move(true);
}

/// Several mails over several passes on a server without MOVE (with or without
/// UIDPLUS): each is copied to its folder exactly once, answered once, and the INBOX
/// ends empty; a message another client marked `\Deleted` is never expunged by us
/// without UIDPLUS (our copies wait for it), and is filed like any mail once taken back.
fn files_each_mail_once_without_move(uidplus: bool) {
    let _g = serial();
    let name = if uidplus { "no-move" } else { "no-move-no-uidplus" };
    let caps =
        if uidplus { format!("{CAPABILITIES_WITHOUT_MOVE} UIDPLUS") } else { CAPABILITIES_WITHOUT_MOVE.to_string() };
    let st = OwnStack::start(name, &caps);
    {
        let mut s = st.session("contact");
        let c = s.capabilities().unwrap();
        assert!(!c.has_str("MOVE"), "the second stack must not offer MOVE");
        assert_eq!(c.has_str("UIDPLUS"), uidplus);
        assert!(c.has_str("IDLE"));
        drop(c);
        let _ = s.logout();
    }
    let app = TestApp::new("contact")
        .with_env("OUTREACH_IMAP__PORT", &st.imap.to_string())
        .with_env("OUTREACH_SMTP__PORT", &st.smtp.to_string());
    let mut d = app.spawn_ready();
    let replies = |ids: &[String]| {
        let got = st.inbox("catchall");
        ids.iter().all(|id| replies_to(&got, id) >= 1)
    };

    // Three passes of two mails each.
    let mut ids = Vec::new();
    for pass in 0..3 {
        for i in 0..2 {
            let sender = format!("{name}-{pass}-{i}@nomove.test");
            let (id, raw) = question(&sender, &format!("Vraag {pass}.{i} zonder MOVE"));
            st.send(&sender, &raw);
            ids.push(id);
        }
        wait_for(&format!("the replies of pass {pass}"), T, &d, || replies(&ids));
        wait_for(&format!("the INBOX emptied after pass {pass}"), T, &d, || st.inbox("contact").is_empty());
    }
    assert!(d.log_text().contains("no MOVE: copied and flagged"), "the daemon took the path without MOVE");

    // Another client has marked a message deleted (not purged: it may take it back).
    let (other_id, other_raw) = question("someone-else@nomove.test", "Verwijderd door iemand anders");
    {
        let mut s = st.session("contact");
        s.append("INBOX", &other_raw).flag(imap::types::Flag::Deleted).finish().unwrap();
        let _ = s.logout();
    }
    let sender = format!("{name}-r@nomove.test");
    let (r_id, r_raw) = question(&sender, "Vraag terwijl iemand anders iets verwijderde");
    st.send(&sender, &r_raw);
    ids.push(r_id.clone());
    wait_for("the reply to the mail beside the other client's deleted one", T, &d, || replies(&ids));
    let in_folder = |id: &str| {
        st.folders("contact")
            .iter()
            .filter(|(n, _)| n != "INBOX")
            .map(|(_, ms)| ms.iter().filter(|m| m.message_id.as_deref() == Some(id)).count())
            .sum::<usize>()
    };
    wait_for("the mail copied to its folder", T, &d, || in_folder(&r_id) == 1);
    let left = if uidplus {
        // UID EXPUNGE removes exactly ours; the other client's message stays.
        wait_for("our copy expunged, the other one kept", T, &d, || st.inbox("contact").len() == 1);
        st.inbox_flags()
    } else {
        // Only a plain EXPUNGE is left, and it would take the other client's message too.
        wait_for("the daemon leaving its copy flagged", T, &d, || {
            d.log_text().contains("another client has marked messages deleted")
        });
        let left = st.inbox_flags();
        assert_eq!(left.len(), 2, "ours waits beside the other one: {left:?}");
        assert!(left.iter().any(|(h, _)| h.contains(&r_id)), "{left:?}");
        left
    };
    assert!(left.iter().all(|(_, deleted)| *deleted), "every message left is flagged \\Deleted: {left:?}");
    assert!(left.iter().any(|(h, _)| h.contains(&other_id)), "the other client's message is not expunged: {left:?}");

    // The other client takes its message back; the next mail's pass files it like any
    // mail, and then every \Deleted message is ours: the INBOX is emptied.
    {
        let mut s = st.session("contact");
        s.select("INBOX").unwrap();
        let uids = s.uid_search(format!("HEADER Message-ID \"{other_id}\"")).unwrap();
        assert_eq!(uids.len(), 1);
        let uid = uids.into_iter().next().unwrap();
        s.uid_store(uid.to_string(), "-FLAGS.SILENT (\\Deleted)").unwrap();
        let _ = s.logout();
    }
    let (m_id, m_raw) = question(&format!("{name}-m@nomove.test"), "Markering zonder MOVE");
    st.send(&format!("{name}-m@nomove.test"), &m_raw);
    ids.push(other_id);
    ids.push(m_id);
    wait_for("the replies to the taken-back mail and the marker", T, &d, || replies(&ids));
    wait_for("the INBOX emptied at the end", T, &d, || st.inbox("contact").is_empty());
    wait_delivered_in(&st.dir);

    // Counts: each mail once in a folder, answered once, filed once.
    let folders = st.folders("contact");
    let answers = st.inbox("catchall");
    for id in &ids {
        let copies: Vec<&str> = folders
            .iter()
            .flat_map(|(n, ms)| ms.iter().filter(|m| m.message_id.as_deref() == Some(id)).map(move |_| n.as_str()))
            .collect();
        assert_eq!(copies.len(), 1, "{id}: exactly one copy, in its folder: {copies:?}");
        assert_ne!(copies[0], "INBOX");
        assert_eq!(replies_to(&answers, id), 1, "{id}: answered exactly once");
    }
    let filed: i64 = app.sql("SELECT COUNT(*) FROM messages");
    let distinct: i64 = app.sql("SELECT COUNT(DISTINCT message_id) FROM messages");
    assert_eq!((filed, distinct), (ids.len() as i64, ids.len() as i64), "each mail filed once");
    let not_moved: i64 = app.sql("SELECT COUNT(*) FROM messages WHERE moved_at IS NULL");
    assert_eq!(not_moved, 0, "every copy recorded");
    eprintln!(
        "{name}: {} mails over 5 passes: {} copies, {} answers, {} left in the INBOX",
        ids.len(),
        folders.iter().filter(|(n, _)| n != "INBOX").map(|(_, m)| m.len()).sum::<usize>(),
        answers.len(),
        st.inbox("contact").len()
    );
    assert!(d.terminate().success(), "clean exit; log:\n{}", d.log_text());
}

// ------------------------------------------------------------------ UIDVALIDITY

#[test]
fn a_mailbox_recreated_under_the_daemon_files_and_answers_nothing_twice_and_tells_the_coordinator_once() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let mut d = app.spawn_ready();
    let first: Vec<(String, String, Vec<u8>)> = (0..2)
        .map(|i| {
            let sender = format!("uv{i}@recreated.test");
            let (id, raw) = question(&sender, &format!("Vraag {i} voor het herstel"));
            (sender, id, raw)
        })
        .collect();
    for (sender, _, raw) in &first {
        send_raw(Some(sender), "contact", raw);
    }
    let replies = |ids: &[&str]| {
        let got = parsed("catchall", "INBOX");
        ids.iter().all(|id| replies_to(&got, id) >= 1)
    };
    let first_ids: Vec<&str> = first.iter().map(|(_, id, _)| id.as_str()).collect();
    wait_for("the first replies", T, &d, || replies(&first_ids));
    wait_for("the first mails moved", T, &d, || count("contact", "INBOX") == 0);

    // The mailbox is recreated on the server: a new UIDVALIDITY (Dovecot drops the
    // daemon's session), and the mails filed before come back into it: one as the
    // server kept it (a restore from a backup), one as its sender sent it (the two
    // differ by the line ending an SMTP hop adds).
    let kept = fetch_all("contact", "Vragen")
        .into_iter()
        .find(|raw| parse(raw).unwrap().message_id.as_deref() == Some(first[0].1.as_str()))
        .expect("the server's copy");
    let old = {
        let mut s = imap("contact");
        let v = s.select("INBOX").unwrap().uid_validity.unwrap();
        let _ = s.logout();
        v
    };
    let new = old + 1000;
    let conf = stack().dir.join("etc/dovecot/dovecot.conf");
    let out = Command::new("doveadm")
        .arg("-c")
        .arg(&conf)
        .args(["mailbox", "update", "-u", "contact@example.org", "--uid-validity", &new.to_string(), "INBOX"])
        .output()
        .unwrap();
    assert!(out.status.success(), "doveadm: {}", String::from_utf8_lossy(&out.stderr));
    append("contact", "INBOX", &kept);
    append("contact", "INBOX", &first[1].2);
    // New mail after the change is filed and answered.
    let (b_id, b_raw) = question("uv-new@recreated.test", "Nieuwe vraag na het herstel");
    send_raw(Some("uv-new@recreated.test"), "contact", &b_raw);
    wait_for("the reply to the new mail", T, &d, || replies(&[&b_id]));
    wait_for("the coordinator's notice", T, &d, || !notices().is_empty());

    // A restart does not tell it again; a marker mail after it is answered.
    assert!(d.terminate().success(), "{}", d.log_text());
    let d = app.spawn_ready();
    let (m_id, m_raw) = question("uv-marker@recreated.test", "Markering na het herstel");
    send_raw(Some("uv-marker@recreated.test"), "contact", &m_raw);
    wait_for("the marker's reply", T, &d, || replies(&[&m_id]));
    wait_for("the INBOX emptied", T, &d, || count("contact", "INBOX") == 0);
    wait_delivered();

    let answers = parsed("catchall", "INBOX");
    for id in first_ids.iter().copied().chain([b_id.as_str(), m_id.as_str()]) {
        assert_eq!(replies_to(&answers, id), 1, "{id}: answered exactly once");
    }
    assert_eq!(answers.len(), 4, "no other mail to the senders");
    let filed: i64 = app.sql("SELECT COUNT(*) FROM messages");
    let distinct: i64 = app.sql("SELECT COUNT(DISTINCT message_id) FROM messages");
    assert_eq!((filed, distinct), (4, 4), "the mails that came back are not filed again: {:#?}", app.list(&[]));
    let notices = notices();
    assert_eq!(
        notices.len(),
        1,
        "the coordinator is told once: {:?}",
        notices.iter().map(|n| &n.subject).collect::<Vec<_>>()
    );
    assert!(notices[0].subject.contains("opnieuw aangemaakt"), "{}", notices[0].subject);
    assert!(
        notices[0].text.contains(&old.to_string()) && notices[0].text.contains(&new.to_string()),
        "{}",
        notices[0].text
    );
    let state: i64 = app.sql("SELECT uidvalidity FROM mailbox_state WHERE mailbox = 'INBOX'");
    assert_eq!(state, i64::from(new));
    assert!(d.log_text().contains("UIDVALIDITY") || d.log_text().contains("connected"));
}

/// The notices about a recreated mailbox in the coordinator's INBOX.
fn notices() -> Vec<ParsedMail> {
    parsed("coordinator", "INBOX").into_iter().filter(|m| m.subject.contains("is opnieuw aangemaakt")).collect()
}

// ------------------------------------------------------------------ disk full

/// A small tmpfs mounted on a temporary folder (as root), unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs failed (the test runs as root)");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Free bytes for an ordinary user of the file system.
    fn free(&self) -> u64 {
        let out = Command::new("stat").args(["-f", "-c", "%a %S"]).arg(self.path()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        it.next().unwrap() * it.next().unwrap()
    }

    /// Sizes of the files in it, for the report.
    fn files(&self) -> String {
        let mut v: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                format!("{} {} B", e.file_name().to_string_lossy(), e.metadata().unwrap().len())
            })
            .collect();
        v.sort();
        v.join(", ")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(self.path()).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// Writes zeros to `path` until the file system refuses; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut total = 0;
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0u8; chunk];
        while let Ok(n) = f.write(&buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    total
}

/// A TCP relay to the shared stack's SMTP port that can be started late, counting the
/// connections it passed on: the proof of what outreach tried to send.
struct Relay {
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(port: u16, to: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, halt) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        n.fetch_add(1, Ordering::Relaxed);
                        client.set_nonblocking(false).unwrap();
                        let server = TcpStream::connect(("127.0.0.1", to)).unwrap();
                        let pipe = |mut a: TcpStream, mut b: TcpStream| {
                            std::thread::spawn(move || {
                                let _ = std::io::copy(&mut a, &mut b);
                                let _ = b.shutdown(std::net::Shutdown::Write);
                            });
                        };
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self { connections, stop }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_full_disk_pauses_filing_says_so_and_everything_resumes_by_itself() {
    let _g = fresh();
    let fs = Tmpfs::mount("8m");
    let relay_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut app = TestApp::new("contact")
        .with_env("OUTREACH_DATABASE__PATH", fs.path().join("outreach.db").to_str().unwrap())
        .with_env("OUTREACH_SMTP__PORT", &relay_port.to_string());
    app.db = fs.path().join("outreach.db");
    // `status` may not open the database on a full disk: its output is read either way.
    let status_text = |app: &TestApp| String::from_utf8_lossy(&app.run_cli(&["status"]).stdout).to_string();
    let status = |app: &TestApp| -> serde_json::Value {
        let out = app.run_cli(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let mut d = app.spawn_ready();

    // A first mail is filed while the relay is still away: its reply waits in the outbox.
    let (w_id, w_raw) = question("w@diskfull.test", "Vraag voor de volle schijf");
    send_raw(Some("w@diskfull.test"), "contact", &w_raw);
    let attempted = "SELECT COUNT(*) FROM outbox WHERE status = 'queued' AND attempts >= 1";
    assert_eq!(app.wait_sql(attempted, 1, T), 1, "the reply waits for the relay; log:\n{}", d.log_text());

    // The disk fills up; mail keeps coming.
    let ballast = fs.path().join("ballast");
    let filled = fill(&ballast);
    assert_eq!(fs.free(), 0, "the file system is full");
    let full_at = Instant::now();
    let mut ids = vec![w_id];
    for i in 0..3 {
        let sender = format!("d{i}@diskfull.test");
        let (id, raw) = question(&sender, &format!("Vraag {i} op een volle schijf"));
        send_raw(Some(&sender), "contact", &raw);
        ids.push(id);
    }
    wait_for("status saying \"disk full\"", T, &d, || {
        status(&app)["fault"]["fault"].as_str().is_some_and(|f| f.starts_with("disk full"))
    });
    let text = status_text(&app);
    assert!(text.contains("FAULT:    disk full"), "{text}");
    let json = status(&app);
    assert_eq!(json["daemon_running"], true, "the daemon stays up: {json:#}");
    assert!(d.log_text().contains("disk full"), "the log says it in plain words");
    let files_when_full = fs.files();

    // The relay comes back while the disk is still full: the reply that is due cannot
    // be claimed (the claim is a write), so nothing goes out without its record.
    let relay = Relay::start(relay_port, stack().smtp_port);
    let seen = d.log_text().len();
    wait_for("a delivery pass refused by the full disk after the relay came back", 2 * T, &d, || {
        let log = d.log_text();
        log[seen..].lines().any(|l| l.contains("delivery pass failed") && l.contains("full"))
    });
    assert_eq!(relay.connections(), 0, "nothing was sent while its record could not be written");
    assert_eq!(count("contact", "INBOX"), 3, "filing stopped before any move: the mails wait in the INBOX");
    let filed: i64 = app.sql("SELECT COUNT(*) FROM messages");
    assert_eq!(filed, 1, "only the mail from before the disk filled is filed");

    // Space comes back: the same daemon goes on by itself.
    let full_for = full_at.elapsed();
    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    let replies = |ids: &[String]| {
        let got = parsed("catchall", "INBOX");
        ids.iter().all(|id| replies_to(&got, id) >= 1)
    };
    wait_for("every reply after the space came back", Duration::from_secs(90), &d, || replies(&ids));
    let resumed_in = freed.elapsed();
    wait_for("the INBOX emptied", T, &d, || count("contact", "INBOX") == 0);
    wait_for("the fault cleared in status", T, &d, || status(&app)["fault"].is_null());
    assert!(d.log_text().contains("disk space is back: filing resumed"), "{}", d.log_text());

    // A restart on a full disk: a clean stop checkpoints the WAL into the database and
    // removes it, which frees some space, so the disk is filled after the stop. The
    // first connection to open the database then needs room for SQLite's shared-memory
    // index: the daemon comes up, says "disk full" and waits (no exit, no restart loop).
    assert!(d.terminate().success(), "a clean stop; log:\n{}", d.log_text());
    let files_after_stop = fs.files();
    let refilled = fill(&ballast);
    assert_eq!(fs.free(), 0);
    let restarted = outreach::domain::time::ts(chrono::Utc::now());
    d = app.spawn();
    wait_for("the restarted daemon saying \"disk full\"", T, &d, || {
        let s = status(&app);
        s["daemon_running"] == true
            && s["fault"]["since"].as_str().is_some_and(|t| *t >= *restarted)
            && s["fault"]["fault"].as_str().is_some_and(|f| f.starts_with("disk full"))
    });
    let text = status_text(&app);
    assert!(text.contains("FAULT:    disk full") && text.contains("database: cannot be opened now"), "{text}");
    let (e_id, e_raw) = question("e@diskfull.test", "Vraag terwijl de herstarte daemon wacht");
    send_raw(Some("e@diskfull.test"), "contact", &e_raw);
    ids.push(e_id.clone());
    wait_for("the mail waiting in the INBOX", T, &d, || count("contact", "INBOX") == 1);
    let sent_before = relay.connections();
    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    wait_for("the reply once the restarted daemon could open", Duration::from_secs(90), &d, || {
        replies(std::slice::from_ref(&e_id))
    });
    let restart_resumed_in = freed.elapsed();
    assert!(d.log_text().contains("disk full: the database cannot be opened; waiting for space"), "{}", d.log_text());

    let (m_id, m_raw) = question("marker@diskfull.test", "Markering na de volle schijf");
    send_raw(Some("marker@diskfull.test"), "contact", &m_raw);
    ids.push(m_id.clone());
    wait_for("the marker's reply", T, &d, || replies(std::slice::from_ref(&m_id)));
    wait_for("the INBOX emptied", T, &d, || count("contact", "INBOX") == 0);
    wait_delivered();

    let answers = parsed("catchall", "INBOX");
    for id in &ids {
        assert_eq!(replies_to(&answers, id), 1, "{id}: answered exactly once");
    }
    assert_eq!(answers.len(), ids.len());
    let filed: i64 = app.sql("SELECT COUNT(*) FROM messages");
    let distinct: i64 = app.sql("SELECT COUNT(DISTINCT message_id) FROM messages");
    assert_eq!((filed, distinct), (ids.len() as i64, ids.len() as i64), "each mail filed once, none lost");
    let sent: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'auto_reply' AND status = 'sent'");
    let open: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE status <> 'sent'");
    assert_eq!((sent, open), (ids.len() as i64, 0), "every reply recorded as sent");
    let integrity: String = app.sql("PRAGMA integrity_check");
    assert_eq!(integrity, "ok");
    let journal = fs.path().join("outreach.db.sent-journal");
    wait_for("the sent journal emptied", T, &d, || std::fs::metadata(&journal).is_ok_and(|m| m.len() == 0));
    wait_for("no fault in status", T, &d, || app.status_json()["fault"].is_null());
    assert!(!status_text(&app).contains("disk full"));
    eprintln!(
        "disk full: ballast {filled} B, then {refilled} B after a clean stop; full for {:.1} s with 3 mails waiting, \
         resumed {:.1} s after the space came back; restarted on a full disk: resumed {:.1} s after; {} relay \
         connections ({sent_before} before the restart); files when full: {files_when_full}; after a clean stop: \
         {files_after_stop}; at the end: {}",
        full_for.as_secs_f64(),
        resumed_in.as_secs_f64(),
        restart_resumed_in.as_secs_f64(),
        relay.connections(),
        fs.files()
    );
    assert!(d.terminate().success(), "{}", d.log_text());
}
