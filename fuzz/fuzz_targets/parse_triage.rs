//! Arbitrary bytes through what the daemon does with every fetched mail before it touches
//! the store: `inbox::parse::parse`, then on a parsed mail the keys, the DMARC reading,
//! every triage rule and the text we may repeat in a mail of ours (see
//! `inbox::filing::Pipeline::admit`/`sort`). Pure functions only: no store, no network.
//!
//! What counts as a finding: any panic in our code, any panic that escapes `parse`, an
//! abort, a sanitizer report, a timeout or memory over `-rss_limit_mb`, and a broken
//! promise asserted below (no control characters in what we may put in a header, the
//! length bounds).
//!
//! Run (see docs/RELIABILITY.md):
//!     cargo +nightly fuzz run parse_triage fuzz/corpus/parse_triage -- -max_len=262144

#![no_main]

use std::collections::HashSet;
use std::panic::PanicHookInfo;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use outreach::domain::{self, EmailAddress};
use outreach::inbox::{auth, parse, triage};

/// Where mail-parser's source lives: a panic raised there happens inside `parse`'s
/// `catch_unwind` (mail-parser is only called from `parse`).
const MAIL_PARSER_SRC: &str = "mail-parser-";

/// Locations of mail-parser panics seen so far, each printed once.
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// `parse` catches panics of mail-parser on purpose (`catch_unwind`): mail-parser 0.11.9
/// panics on some malformed multiparts, and the daemon files such a mail for review
/// instead of dying. libfuzzer-sys installs a panic hook that aborts *before* unwinding,
/// which would report every one of those caught panics as a crash. So this hook replaces
/// it (the init block runs after libfuzzer-sys's own `initialize`), and the target is
/// built with panic=unwind (cargo-fuzz's default; a panic=abort build could not catch
/// anything):
///
/// - a panic raised in mail-parser's source is left to unwind into `parse`'s
///   `catch_unwind`, as in the daemon; its location is printed once, for the record;
/// - any other panic is a finding: it is printed and the process aborts at once, as
///   libfuzzer-sys's hook would. That includes a panic in our own code that `parse`'s
///   catch would otherwise hide (e.g. in `clean_text` or the body truncation), since it
///   is raised outside mail-parser's source.
///
/// A panic that escapes `parse` could only come from outside mail-parser, so it aborts
/// here; libfuzzer-sys would abort on it in any case (its `catch_unwind` around the target).
fn panic_hook(info: &PanicHookInfo<'_>) {
    let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    match location {
        Some(loc) if loc.contains(MAIL_PARSER_SRC) => {
            let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
            if seen.get_or_insert_with(HashSet::new).insert(loc.clone()) {
                eprintln!("parse_triage: mail-parser panicked at {loc} (caught by parse)");
            }
        }
        _ => {
            eprintln!("parse_triage: FINDING: panic outside mail-parser: {info}");
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
            std::process::abort();
        }
    }
}

/// No control character (CR/LF above all) in text we may put in a header or a log line.
fn assert_one_line(what: &str, s: &str) {
    assert!(!s.chars().any(char::is_control), "{what} holds a control character: {s:?}");
    assert!(
        !s.chars().any(|c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')),
        "{what} holds a bidi control: {s:?}"
    );
}

fuzz_target!(
    init: std::panic::set_hook(Box::new(panic_hook)),
    |data: &[u8]| {
        let own = [EmailAddress::parse("contact@example.org").expect("a valid address")];

        // The free-text helpers also see raw input, not only what mail-parser made of it.
        let lossy = String::from_utf8_lossy(data);
        assert_one_line("domain::clean_text", &domain::clean_text(&lossy));
        let rep = domain::repeatable(&lossy, 100);
        assert_one_line("domain::repeatable", &rep);
        assert!(rep.chars().count() <= 100, "repeatable longer than 100 characters");
        let _ = triage::normalize_subject(&lossy);
        let _ = triage::case_reference_in(&lossy);

        let Some(mail) = parse::parse(data) else { return };

        // Admission: the filing keys.
        let key = parse::dedupe_key(mail.message_id.as_deref(), data);
        assert!(key.starts_with("mid:") || key.starts_with("sha256:"));
        let hash = parse::content_hash(&mail);
        assert_eq!(hash.len(), 64);
        assert!(mail.text.len() <= 64 * 1024, "text over its bound: {} bytes", mail.text.len());
        assert!(!mail.text.contains('\0'));
        assert_one_line("subject", &mail.subject);
        for (what, v) in [("from_name", &mail.from_name), ("from_raw", &mail.from_raw), ("message_id", &mail.message_id)] {
            if let Some(v) = v {
                assert_one_line(what, v);
            }
        }
        for id in mail.references.iter().chain(&mail.in_reply_to) {
            assert_one_line("references/in-reply-to", id);
        }

        // Sender authentication as our server recorded it.
        let _ = auth::dmarc(&mail, "mx.example.org");

        // Sorting.
        let _ = triage::detect_automatic(&mail, &own);
        let _ = triage::is_bounce(&mail);
        let _ = triage::classify(&mail);
        let _ = triage::detect_language(&mail);
        let _ = triage::says_yes(&mail);
        let _ = triage::proof_answer(&mail);
        let _ = triage::asks_for_newsletter(&mail);
        let _ = triage::asks_to_join_network(&mail);
        let _ = triage::own_words(&mail.text);
        let subject_norm = triage::normalize_subject(&mail.subject);
        let _ = triage::case_reference_in(&mail.subject);
        let _ = triage::case_reference_in(&subject_norm);
        if let Some(from) = &mail.from {
            let _ = from.normalized();
            let _ = from.domain();
        }
        if let Some(addr) = mail.reply_address() {
            let _ = triage::unanswerable(addr);
        }
        let _ = mail.return_path();

        // What we may repeat in a mail of ours (a stranger's name and subject).
        let subject = domain::repeatable(&mail.subject, 100);
        assert_one_line("repeatable subject", &subject);
        assert!(subject.chars().count() <= 100);
        if let Some(name) = &mail.from_name {
            let name = domain::repeatable(name, 60);
            assert_one_line("repeatable name", &name);
            assert!(name.chars().count() <= 60);
        }
        let _ = domain::clean_text(&mail.text);
    }
);
