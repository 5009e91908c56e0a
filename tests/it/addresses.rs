//! Internationalised addresses end to end. An address at an IDN domain is answered
//! through any server (its domain goes as A-labels); a non-ASCII local part (RFC 6531)
//! only through a server whose EHLO offers SMTPUTF8, and otherwise the filed mail and the
//! newsletter delivery say why nothing was sent.
//!
//! Dovecot 2.3's LMTP does not offer SMTPUTF8, so the shared stack's Postfix bounces
//! SMTPUTF8 mail on its way to the catchall mailbox: the "offered" case runs against a
//! second stack whose Postfix writes foreign mail to a Maildir itself. The "not offered"
//! case points the daemon at the shared stack's `smtp-sink`, whose EHLO has no SMTPUTF8.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outreach::inbox::parse::parse;

use crate::helpers::*;

const T: Duration = Duration::from_secs(30);

/// A unique word for a subject (no dots or `@`, so it is never taken for a link).
fn tag() -> String {
    new_id().chars().filter(char::is_ascii_alphanumeric).take(24).collect()
}

/// A mail from `from` (a header value, UTF-8 allowed: RFC 6532) put straight into the
/// contact INBOX, as the receiving server would after an SMTPUTF8 transaction.
fn arrives(from: &str, subject: &str) {
    let (_, raw) = mail(from, subject, "Hoe kan ik ambassadeur worden?", &[]);
    append("contact", "INBOX", &raw);
}

/// The header block of a raw message.
fn head(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

/// The shared stack's smtp-sink port (its EHLO offers no SMTPUTF8).
fn sink_port() -> u16 {
    let env = std::fs::read_to_string(stack().dir.join("mailstack.env")).unwrap();
    env.lines().find_map(|l| l.strip_prefix("MAILSTACK_SINK_PORT=")).expect("sink port").parse().unwrap()
}

/// A second mail stack (deploy/mailstack/start.sh) in its own folder on free ports, with
/// `MAILSTACK_FOREIGN=maildir`: its Postfix offers SMTPUTF8 and keeps foreign-domain mail
/// in a Maildir of its own. Stopped when dropped.
struct SecondStack {
    dir: tempfile::TempDir,
    smtp_port: u16,
}

impl SecondStack {
    fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("outreach-utf8-stack").tempdir_in("/tmp").unwrap();
        // Seven ports the kernel has just handed out, released for start.sh to take.
        let listeners: Vec<TcpListener> = (0..7).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(listeners);
        let names = ["IMAP", "IMAPS", "LMTP", "SMTP", "SUBMISSION", "SMTPS", "SINK"];
        let mut cmd = Command::new("bash");
        cmd.arg(script("start.sh"))
            .arg(dir.path())
            .env("MAILSTACK_FOREIGN", "maildir")
            .env("MAILSTACK_NO_INSTALL", "1");
        for (name, port) in names.iter().zip(&ports) {
            cmd.env(format!("MAILSTACK_{name}_PORT"), port.to_string());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "second mail stack did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir, smtp_port: ports[3] }
    }

    /// Waits for the foreign-domain mail whose subject contains `needle`; its raw bytes.
    fn wait_foreign(&self, needle: &str) -> Vec<u8> {
        let new = self.dir.path().join("mail/foreign/Maildir/new");
        let mut found = None;
        wait_until(&format!("a mail {needle:?} in {}", new.display()), || {
            found = std::fs::read_dir(&new).into_iter().flatten().flatten().find_map(|e| {
                let raw = std::fs::read(e.path()).ok()?;
                parse(&raw).filter(|m| m.subject.contains(needle)).map(|_| raw)
            });
            found.is_some()
        });
        found.unwrap()
    }
}

impl Drop for SecondStack {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script("stop.sh")).arg(self.dir.path()).output();
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mailstack").join(name)
}

/// The filed message whose subject contains `needle`, from `inbox list --json`.
fn filed(app: &TestApp, needle: &str) -> serde_json::Value {
    let rows = app.list(&[]);
    rows.into_iter()
        .find(|m| m["subject"].as_str().is_some_and(|s| s.contains(needle)))
        .unwrap_or_else(|| panic!("no filed message {needle:?}"))
}

#[test]
fn a_sender_at_an_idn_domain_is_answered_with_a_labels_and_is_one_address_in_either_spelling() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let first = tag();
    arrives("Bea Bücher <Info@Bücher.example>", &format!("Vraag {first}"));
    app.poll();

    // The reply went through the real Postfix (no SMTPUTF8 needed) to the catchall
    // mailbox, addressed with the A-label form; every header line is ASCII.
    let replies = wait_subject("catchall", &first, 1, T);
    assert_eq!(replies.len(), 1, "the reply arrives");
    let raw = fetch_all("catchall", "INBOX").into_iter().find(|r| String::from_utf8_lossy(r).contains(&first)).unwrap();
    let header = head(&raw);
    assert!(header.is_ascii(), "{header}");
    assert!(header.contains("<info@xn--bcher-kva.example>"), "{header}");
    let m = filed(&app, &first);
    assert_eq!(m["from"], "info@bücher.example", "{m:#}");
    assert_eq!(m["auto_replied"], true, "{m:#}");

    // The same sender writing the domain as A-labels, in capitals: the same address,
    // so the window of one auto-reply per address holds.
    let second = tag();
    arrives("INFO@XN--BCHER-KVA.EXAMPLE", &format!("Nog een vraag {second}"));
    app.poll();
    let m = filed(&app, &second);
    assert_eq!(m["from"], "info@bücher.example", "{m:#}");
    let note = m["reply_note"].as_str().unwrap();
    assert!(note.contains("already got an auto-reply within"), "{m:#}");
}

#[test]
fn a_non_ascii_local_part_is_answered_through_a_server_that_offers_smtputf8() {
    let _g = fresh();
    let second = SecondStack::start();
    let app = TestApp::new("contact").with_env("OUTREACH_SMTP__PORT", &second.smtp_port.to_string());
    let t = tag();
    arrives("Jan Döe <JDöe@Mächine.example>", &format!("Aanmelding {t}"));
    app.poll();

    let raw = second.wait_foreign(&t);
    let text = String::from_utf8_lossy(&raw);
    let header = head(&raw);
    assert!(header.contains("with UTF8SMTP"), "sent with MAIL FROM ... SMTPUTF8:\n{header}");
    assert!(header.contains("Delivered-To: jdöe@xn--mchine-bua.example"), "{header}");
    assert!(header.contains("<jdöe@xn--mchine-bua.example>"), "{header}");
    assert!(text.contains("Auto-Submitted: auto-replied"), "{header}");
    let m = filed(&app, &t);
    assert_eq!(m["from"], "jdöe@mächine.example", "{m:#}");
    assert_eq!(m["auto_replied"], true, "{m:#}");
    let sent: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE status = 'sent' AND kind = 'auto_reply'");
    assert_eq!(sent, 1);
}

#[test]
fn a_non_ascii_local_part_is_filed_with_the_reason_and_not_answered_without_smtputf8() {
    let _g = fresh();
    let app = TestApp::new("contact").with_env("OUTREACH_SMTP__PORT", &sink_port().to_string());
    let (utf8, idn) = (tag(), tag());
    arrives("Jan Döe <jdöe@mächine.example>", &format!("Vraag {utf8}"));
    // The control: an ASCII local part at an IDN domain goes to the same server.
    arrives("Bea <info@bücher.example>", &format!("Vraag {idn}"));
    // A failed delivery makes `poll --once` exit non-zero (for cron); it says what it did.
    let out = app.run_cli(&["poll", "--once"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("2 filed") && said.contains("outbox: 1 sent, 0 deferred, 1 failed"), "{said}");

    let sent: String = app.sql("SELECT status FROM outbox WHERE rcpt = 'info@bücher.example'");
    assert_eq!(sent, "sent");
    let (status, error): (String, String) = (
        app.sql("SELECT status FROM outbox WHERE rcpt = 'jdöe@mächine.example'"),
        app.sql("SELECT last_error FROM outbox WHERE rcpt = 'jdöe@mächine.example'"),
    );
    assert_eq!(status, "failed", "{error}");
    assert!(error.contains("does not offer SMTPUTF8"), "{error}");

    // The coordinator reads why in the filed mail, which waits for a person.
    let m = filed(&app, &utf8);
    assert_eq!(m["auto_replied"], false, "{m:#}");
    assert_eq!(m["status"], "new", "{m:#}");
    let note = m["reply_note"].as_str().unwrap();
    assert!(
        note.starts_with("auto-reply failed: the address has non-ASCII characters before the @")
            && note.contains("does not offer SMTPUTF8"),
        "{note}"
    );
    let shown = app.ok(&["inbox", "show", &m["id"].to_string()]);
    assert!(shown.contains("Reply:     auto-reply failed: the address has non-ASCII"), "{shown}");
}

#[test]
fn a_newsletter_copy_to_a_non_ascii_local_part_is_recorded_failed_without_smtputf8() {
    let _g = fresh();
    let app = TestApp::new("contact").with_env("OUTREACH_SMTP__PORT", &sink_port().to_string());
    app.ok(&["subscribers", "add", "JDöe@Mächine.example", "--consent", "test"]);
    app.ok(&["subscribers", "add", "info@xn--bcher-kva.example", "--consent", "test"]);
    let story = app.dir.path().join("story.md");
    std::fs::write(&story, "---\ntitle: Samen sterk\nambassador: Fatima El Amrani\nrole: begeleider\n---\nTekst.\n")
        .unwrap();
    let out = app.ok(&["stories", "add", story.to_str().unwrap()]);
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    app.ok(&["stories", "approve", &id]);
    app.ok(&["newsletter", "send"]);

    let q = |email: &str, col: &str| -> String {
        app.sql(&format!(
            "SELECT COALESCE(d.{col}, '') FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE s.email = '{email}'"
        ))
    };
    assert_eq!(q("info@bücher.example", "status"), "sent", "stored in one form, sent as A-labels");
    assert_eq!(q("jdöe@mächine.example", "status"), "failed");
    let error = q("jdöe@mächine.example", "last_error");
    assert!(error.contains("does not offer SMTPUTF8"), "{error}");
}
