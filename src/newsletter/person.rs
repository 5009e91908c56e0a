//! One person's data: all of it shown on request (`outreach person export`), or erased
//! (`outreach person erase`, `subscribers remove --erase`), GDPR articles 15 and 17.
//!
//! **Erasing** removes the person from every table, in one transaction:
//!
//! - subscriber rows: no address (`erased-N`), no name, no consent text, a new nonce (old
//!   links die); open deliveries skipped and their error texts removed (the rows stay,
//!   so the counts of past issues stay right);
//! - mail we queued for them (to their address, about their subscription, answering
//!   their mail): deleted, bytes and recipient with it;
//! - messages they sent (From or Reply-To): address, name, subject, text and notes
//!   removed; the row stays with its dedupe key, so a mail of theirs still in the
//!   mailbox is never filed or answered again;
//! - their conversations: no contact, no subject; their contact: deleted;
//! - as an ambassador: the address is taken off the ambassador (no more stories by
//!   mail); the ambassador's name and stories stay (published with consent) and are
//!   reported, for the coordinator to decide;
//! - every other text that names them (a delivery report quoting the address, a daemon
//!   error, a note, the text of a notice to the coordinator): their address and full
//!   name replaced by `[erased]`;
//! - kept: only a keyed hash of the address ([`Signer::address_hash`]) in `suppressed`,
//!   so no import or command adds them again. Only the person's own sign-up by mail can
//!   bring them back, through double opt-in like anyone else.
//!
//! **Earlier erasures** were kept as a bare SHA-256 of the address. Those are still
//! honoured: both hashes are checked, and when an address matches its bare hash, that
//! row is replaced by the keyed one (it cannot be done ahead: only the address gives the
//! keyed hash). So bare hashes disappear as the addresses come by.
//!
//! The key is the token secret (`secret`, or the one generated in the database):
//! changing it makes earlier erasures unrecognisable, like it makes old links invalid.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Ctx;
use super::subscribers::email_hash;
use super::tokens::Signer;
use crate::domain::EmailAddress;
use crate::domain::redact::replace_ignoring_case;
use crate::store::person::{PersonRecord, PersonRows};
use crate::store::{DaemonLock, Db, Store};

/// What `person export` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PersonExport {
    pub address: String,
    /// Whether something is stored about the address (besides the erased list).
    pub found: bool,
    /// Whether the address was erased on request earlier (only a keyed hash is kept).
    pub erased: bool,
    #[serde(flatten)]
    pub record: PersonRecord,
}

/// What erasing did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Erased {
    pub subscribers: usize,
    pub messages: usize,
    pub conversations: usize,
    pub contacts: usize,
    pub outgoing: usize,
    /// Other texts that named them, rewritten.
    pub mentions: usize,
    /// Mail to others whose stored text named them, emptied.
    pub other_mail: usize,
    /// Ambassadors that had the address: their name and how many stories stay.
    pub ambassadors_kept: Vec<(String, usize)>,
    /// Web desk logins of the address (links, sessions, a password), ended.
    pub desk_logins: usize,
}

/// What replaces the person's address and name in texts that are not theirs.
const ERASED: &str = "[erased]";

/// The texts to look for: the address (as given and as the mailbox) and every full name
/// they gave (two words or more: a first name alone is too common to replace).
fn needles(addr: &EmailAddress, rows: &PersonRows) -> Vec<String> {
    let mut n = vec![addr.as_str().to_string()];
    if addr.normalized() != addr.as_str() {
        n.push(addr.normalized());
    }
    for name in &rows.names {
        let name = crate::domain::clean_text(name);
        if name.split_whitespace().count() >= 2 && name.chars().count() >= 5 && !n.contains(&name) {
            n.push(name);
        }
    }
    n
}

impl Ctx {
    fn keyed_hash(&self, addr: &EmailAddress) -> String {
        Signer::address_hash(&self.signer, addr)
    }

    /// The stored hash that marks `addr` as erased, keyed or bare (earlier erasures).
    fn erased_hash(&self, st: Store<'_>, addr: &EmailAddress) -> anyhow::Result<Option<String>> {
        let keyed = self.keyed_hash(addr);
        let bare = email_hash(addr.as_str());
        st.suppressed_hash(&[&keyed, &bare])
    }

    /// Whether `addr` was erased on request. A match on an earlier bare hash is replaced
    /// by the keyed hash.
    pub fn is_erased(&self, st: Store<'_>, addr: &EmailAddress) -> anyhow::Result<bool> {
        let Some(found) = self.erased_hash(st, addr)? else { return Ok(false) };
        let keyed = self.keyed_hash(addr);
        if found != keyed {
            st.replace_suppressed(&found, &keyed)?;
        }
        Ok(true)
    }

    /// Everything stored about the person with this address.
    pub fn person_export(&self, st: Store<'_>, addr: &EmailAddress) -> anyhow::Result<PersonExport> {
        let rows = st.person_rows(addr)?;
        Ok(PersonExport {
            address: addr.to_string(),
            found: !rows.is_empty(),
            erased: self.erased_hash(st, addr)?.is_some(),
            record: st.person_record(&rows)?,
        })
    }

    /// Erases the person with this address from every table, keeping only the keyed
    /// hash of the address (see the module documentation). Run it in one transaction;
    /// afterwards `Db::compact` empties the WAL of the old versions of the rows.
    pub fn erase_person(&self, st: Store<'_>, addr: &EmailAddress, now: DateTime<Utc>) -> anyhow::Result<Erased> {
        let rows = st.person_rows(addr)?;
        let needles = needles(addr, &rows);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        for s in &rows.subscribers {
            st.erase_subscriber(*s, now)?;
        }
        st.delete_outgoing(&rows.outbox)?;
        st.forget_messages(&rows.messages)?;
        st.forget_conversations(&rows.conversations)?;
        st.delete_contacts(&rows.contacts)?;
        let desk_logins = st.forget_desk_user(&[addr.as_str(), &addr.normalized()])?;
        let mut ambassadors_kept = Vec::new();
        for a in &rows.ambassadors {
            st.forget_ambassador_address(*a)?;
            if let Some(amb) = st.ambassadors()?.into_iter().find(|x| x.id == *a) {
                let stories = st.stories(None)?.into_iter().filter(|s| s.ambassador == amb.name).count();
                ambassadors_kept.push((amb.name, stories));
            }
        }
        let mut mentions = 0;
        let found = st.mentions(&needles)?;
        mentions += st.drop_html_where_mentioned(&found)?;
        // That HTML is gone: nothing to rewrite there.
        for m in found.into_iter().filter(|m| m.place != crate::store::person::Place::MessageHtml) {
            let text = replace_ignoring_case(&m.text, &needles, ERASED);
            if text != m.text {
                st.rewrite_mention(&m, &text)?;
                mentions += 1;
            }
        }
        let other_mail = st.clear_outgoing_mentioning(&needles)?;
        // Last: every change above may have left the person's words in the search index.
        st.optimize_search_index()?;
        if let Some(old) = self.erased_hash(st, addr)? {
            st.replace_suppressed(&old, &self.keyed_hash(addr))?;
        }
        st.suppress(&self.keyed_hash(addr), now)?;
        tracing::info!(
            subscribers = rows.subscribers.len(),
            messages = rows.messages.len(),
            outgoing = rows.outbox.len(),
            mentions,
            "person erased on request"
        );
        Ok(Erased {
            subscribers: rows.subscribers.len(),
            messages: rows.messages.len(),
            conversations: rows.conversations.len(),
            contacts: rows.contacts.len(),
            outgoing: rows.outbox.len(),
            mentions,
            other_mail,
            ambassadors_kept,
            desk_logins,
        })
    }
}

impl Ctx {
    /// Erases the person (one transaction), then empties the WAL of the old versions of
    /// their rows; the whole file is rewritten too (`VACUUM`) when no daemon runs (it
    /// would wait for the write lock meanwhile; the lock keeps one from starting during
    /// the rewrite). Returns what was erased and whether the WAL could be emptied now.
    /// `outreach person erase` and the web desk both erase this way.
    pub fn erase_person_everywhere(&self, db: &mut Db, addr: &EmailAddress) -> anyhow::Result<(Erased, bool)> {
        let now = self.clock.now();
        let erased = db.write(|st| self.erase_person(st, addr, now))?;
        let idle = DaemonLock::acquire(&self.settings.database.path).ok();
        let emptied = db.compact(idle.is_some())?;
        drop(idle);
        Ok((erased, emptied))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Settings;
    use crate::domain::Language;
    use crate::domain::time::Clock;
    use crate::store::Db;
    use crate::templates::Templates;

    fn ctx(db: &mut Db, dir: &std::path::Path) -> Ctx {
        let toml = format!(
            "secret = \"unit-test-secret-0123456789abcdef0123\"\n[database]\npath = \"{}\"\n[imap]\nhost = \"h\"\nport = 143\nsecurity = \"none\"\nusername = \"contact@example.org\"\npassword = \"p\"\n[smtp]\nhost = \"h\"\nport = 25\nsecurity = \"none\"\nfrom = \"N <contact@example.org>\"\n",
            dir.join("db").display()
        );
        let path = dir.join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let settings = Arc::new(Settings::load(&path, std::iter::empty()).unwrap());
        Ctx::new(settings, Arc::new(Templates::load(None).unwrap()), db, Clock::system()).unwrap()
    }

    /// Files `n` mails from the person and others, with replies, a subscription and mail
    /// to others that names them.
    fn fill(db: &mut Db, ctx: &Ctx, who: &EmailAddress, name: &str, n: usize) {
        use crate::domain::state::{MessageStatus, OutboxKind};
        use crate::domain::{Category, Language};
        use crate::store::{NewMessage, NewOutgoing};
        let now = Utc::now();
        let tx = db.begin().unwrap();
        for i in 0..n {
            let (from, from_name) = if i % 3 == 0 {
                (who.to_string(), name.to_string())
            } else {
                (format!("other{i}@example.org"), format!("Other {i}"))
            };
            let contact = tx.upsert_contact(&from, Some(&from_name), Language::Dutch, now).unwrap().0;
            let conv = tx
                .create_conversation(Some(contact), Category::Question, &format!("vraag van {from_name}"), now)
                .unwrap();
            let body = format!(
                "Hallo,\n\nIk heb een vraag over het netwerk. {}\n\nGroet,\n{from_name}\n{from}\n",
                "tekst ".repeat(40)
            );
            let row = tx
                .insert_message(
                    &NewMessage {
                        dedupe_key: format!("mid:m{i}@test"),
                        content_hash: None,
                        message_id: Some(format!("m{i}@test")),
                        in_reply_to: None,
                        refs: vec![],
                        from_addr: Some(from.clone()),
                        from_name: Some(from_name.clone()),
                        reply_to: None,
                        subject: format!("Vraag {i} van {from_name}"),
                        body_text: body.clone(),
                        // Others' mail names the person by address (a mention to rewrite).
                        body_html: Some(format!("<p>{body}</p><p>Zie ook {who}</p>")),
                        attachments: vec![crate::domain::Attachment {
                            name: format!("brief van {from_name} aan {who}.pdf"),
                            size: 1234,
                            content_type: "application/pdf".into(),
                        }],
                        category: Category::Question,
                        reason: "question: test".into(),
                        language: Language::Dutch,
                        status: MessageStatus::New,
                        folder: "Vragen".into(),
                        reply_note: String::new(),
                        auto_replied: false,
                        conversation_id: Some(conv),
                        size: 100,
                        received_at: now,
                        date_header: None,
                        uidvalidity: Some(1),
                        uid: Some(i as u32),
                    },
                    now,
                )
                .unwrap();
            let raw = format!(
                "To: {from_name} <{from}>\r\nSubject: Auto: vraag\r\n\r\nBeste {from_name},\r\n{}\r\n> {body}",
                "antwoord ".repeat(200)
            );
            let mut out = NewOutgoing::new(
                OutboxKind::AutoReply,
                format!("r{i}@us"),
                String::new(),
                from.clone(),
                raw.into_bytes(),
            );
            out.reply_to_msg = Some(row);
            out.conversation_id = Some(conv);
            tx.enqueue(&out, now).unwrap();
            if i % 7 == 0 {
                // A delivery report about the person, from a mailer daemon.
                let dsn = format!("Final-Recipient: rfc822; {who}\nStatus: 5.1.1\nTo: {name} <{who}>\n");
                let mut m = NewMessage {
                    dedupe_key: format!("mid:dsn{i}@test"),
                    message_id: Some(format!("dsn{i}@test")),
                    from_addr: Some("mailer-daemon@example.org".into()),
                    from_name: None,
                    subject: "Undelivered Mail Returned to Sender".into(),
                    body_text: dsn,
                    category: Category::Bounce,
                    conversation_id: None,
                    ..tx_message_template(now)
                };
                m.status = MessageStatus::Done;
                tx.insert_message(&m, now).unwrap();
            }
        }
        tx.commit().unwrap();
        db.set_state("last_error", &format!("smtp: 550 <{who}>: {name} unknown"), now).unwrap();
        db.write(|st| {
            ctx.subscribe(st, who, Some(name), Language::Dutch, "cli", Some(("form", now)), now)?;
            Ok(())
        })
        .unwrap();
    }

    fn tx_message_template(now: DateTime<Utc>) -> crate::store::NewMessage {
        use crate::domain::state::MessageStatus;
        use crate::domain::{Category, Language};
        crate::store::NewMessage {
            dedupe_key: String::new(),
            content_hash: None,
            message_id: None,
            in_reply_to: None,
            refs: vec![],
            from_addr: None,
            from_name: None,
            reply_to: None,
            subject: String::new(),
            body_text: String::new(),
            body_html: None,
            attachments: vec![],
            category: Category::Question,
            reason: "test".into(),
            language: Language::Dutch,
            status: MessageStatus::New,
            folder: "Automatisch".into(),
            reply_note: String::new(),
            auto_replied: false,
            conversation_id: None,
            size: 10,
            received_at: now,
            date_header: None,
            uidvalidity: None,
            uid: None,
        }
    }

    fn file_contains(path: &std::path::Path, needle: &str) -> bool {
        let bytes = std::fs::read(path).unwrap_or_default();
        let n = needle.as_bytes();
        bytes.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
    }

    #[test]
    fn nothing_of_an_erased_person_is_left_in_the_file_or_its_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut db = Db::open(&path).unwrap();
        let ctx = ctx(&mut db, dir.path());
        let who = EmailAddress::parse("wilhelmina.zonnebloem@ouderkracht.test").unwrap();
        fill(&mut db, &ctx, &who, "Wilhelmina Zonnebloem", 300);
        let wal = crate::store::beside_database(&path, "-wal").unwrap();
        assert!(file_contains(&path, "zonnebloem") || file_contains(&wal, "zonnebloem"), "the test data is there");
        // They were a desk user too: a login link, a session, a password, a note.
        db.write(|st| {
            let now = Utc::now();
            st.create_login_link("link-hash", who.as_str(), now, now + chrono::Duration::minutes(15))?;
            st.create_session("session-hash", who.as_str(), "csrf", now, now + chrono::Duration::hours(8))?;
            st.set_desk_password(who.as_str(), "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", now)?;
            let conv = crate::domain::ids::ConversationId(1);
            st.record_desk_event(conv, crate::domain::state::DeskEventKind::Note, who.as_str(), "Gebeld.", "", now)?;
            Ok(())
        })
        .unwrap();
        let e = db.write(|st| ctx.erase_person(st, &who, Utc::now())).unwrap();
        assert_eq!((e.messages, e.outgoing, e.subscribers, e.contacts), (100, 100, 1, 1), "{e:?}");
        assert_eq!(e.desk_logins, 3, "the link, the session and the password are gone");
        assert!(db.store().session("session-hash", Utc::now()).unwrap().is_none());
        assert!(e.mentions > 0, "the daemon states that quoted the address");
        let export = ctx.person_export(db.store(), &who).unwrap();
        assert!(!export.found && export.erased, "{export:?}");
        // secure_delete overwrote the rows; the checkpoint empties the WAL (no VACUUM, as
        // while a daemon runs).
        assert!(db.compact(false).unwrap(), "nobody else reads: the WAL is emptied");
        for f in [&path, &wal] {
            for needle in ["zonnebloem", "wilhelmina"] {
                assert!(!file_contains(f, needle), "{needle} is still in {}", f.display());
            }
        }
        // The others are still there.
        let others = db.store().person_rows(&EmailAddress::parse("other1@example.org").unwrap()).unwrap();
        assert_eq!(others.messages.len(), 1);
        // Their mail keeps its text and attachment list, the address in them rewritten;
        // its HTML named the person, and goes (an entity could hide a name from a rewrite).
        let m = db.store().filed_message(others.messages[0]).unwrap().unwrap();
        assert_eq!(m.attachments[0].name, "brief van Other 1 aan [erased].pdf");
        assert!(m.body.as_deref().is_some_and(|b| b.contains("vraag over het netwerk")), "{:?}", m.body);
        assert_eq!(m.body_html, None);
    }

    #[test]
    fn erasing_a_tagged_address_ends_the_desk_logins_of_its_plain_form() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("db")).unwrap();
        let ctx = ctx(&mut db, dir.path());
        let now = Utc::now();
        // The desk keeps the normalized address (no +tag).
        db.write(|st| {
            st.create_session("s", "ann@example.org", "c", now, now + chrono::Duration::hours(1))?;
            st.set_desk_password("ann@example.org", "$argon2id$x", now)?;
            st.create_session("other", "bob@example.org", "c", now, now + chrono::Duration::hours(1))
        })
        .unwrap();
        let who = EmailAddress::parse("Ann+Balie@example.org").unwrap();
        let e = db.write(|st| ctx.erase_person(st, &who, now)).unwrap();
        assert_eq!(e.desk_logins, 2);
        assert!(db.store().session("s", now).unwrap().is_none());
        assert!(db.store().session("other", now).unwrap().is_some(), "someone else's session stays");
    }

    #[test]
    fn an_erased_address_is_refused_except_for_its_own_sign_up_and_old_bare_hashes_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("db")).unwrap();
        let ctx = ctx(&mut db, dir.path());
        let now = Utc::now();
        let ann = EmailAddress::parse("ann@example.nl").unwrap();
        db.write(|st| {
            ctx.subscribe(st, &ann, Some("Ann de Vries"), Language::Dutch, "cli", Some(("form", now)), now)?;
            let e = ctx.erase_person(st, &ann, now)?;
            assert_eq!(e.subscribers, 1);
            Ok(())
        })
        .unwrap();
        let kept = |h: &str| db.store().suppressed_hash(&[h]).unwrap().is_some();
        assert!(kept(&ctx.keyed_hash(&ann)), "the keyed hash is kept");
        assert!(!kept(&email_hash("ann@example.nl")), "not a bare hash");
        db.write(|st| {
            let r = ctx.subscribe(st, &ann, None, Language::Dutch, "import", Some(("list", now)), now)?;
            assert_eq!(r, super::super::Subscribed::Suppressed, "an import does not bring them back");
            let r = ctx.subscribe(st, &ann, None, Language::Dutch, "mail <x@y>", None, now)?;
            assert!(matches!(r, super::super::Subscribed::ConfirmationSent(_)), "their own sign-up: {r:?}");
            // An erasure of an earlier version: a bare SHA-256.
            let bob = EmailAddress::parse("bob@example.nl").unwrap();
            st.suppress(&email_hash("bob@example.nl"), now)?;
            assert!(ctx.is_erased(st, &bob)?);
            assert_eq!(st.suppressed_hash(&[&email_hash("bob@example.nl")])?, None, "replaced");
            assert!(st.suppressed_hash(&[&ctx.keyed_hash(&bob)])?.is_some(), "by the keyed hash");
            Ok(())
        })
        .unwrap();
    }
}
