//! The IMAP side: connect (plain, STARTTLS or TLS), select, search, fetch by UID with
//! `BODY.PEEK[]`, move by UID, and IDLE. The only module that touches the `imap` crate.
//! Blocking: it runs on its own thread.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use imap::extensions::idle::{SetReadTimeout, WaitOutcome};
use imap::types::UnsolicitedResponse;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use secrecy::ExposeSecret;

use crate::config::{ImapSettings, Security};

/// A plain or TLS-wrapped TCP stream.
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl ImapStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            ImapStream::Plain(s) => s,
            ImapStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for ImapStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ImapStream::Plain(s) => s.read(buf),
            ImapStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ImapStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ImapStream::Plain(s) => s.write(buf),
            ImapStream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            ImapStream::Plain(s) => s.flush(),
            ImapStream::Tls(s) => s.flush(),
        }
    }
}

impl SetReadTimeout for ImapStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> imap::Result<()> {
        self.tcp().set_read_timeout(timeout).map_err(imap::Error::Io)
    }
}

/// Lets another thread wake a blocking IDLE (for shutdown) by closing its socket.
#[derive(Clone, Default)]
pub struct Interrupter(Arc<Mutex<Option<TcpStream>>>);

impl Interrupter {
    pub fn interrupt(&self) {
        if let Some(s) = self.0.lock().expect("interrupter lock").take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    fn arm(&self, s: TcpStream) {
        *self.0.lock().expect("interrupter lock") = Some(s);
    }
    fn disarm(&self) {
        self.0.lock().expect("interrupter lock").take();
    }
}

/// Size and arrival time of a message, fetched before its body.
#[derive(Debug, Clone, Copy)]
pub struct MessageMeta {
    pub uid: u32,
    pub size: u64,
    pub internal_date: DateTime<Utc>,
}

/// A fetched message: the full bytes, or only the header when over the size cap.
#[derive(Debug)]
pub struct FetchedMessage {
    pub meta: MessageMeta,
    pub raw: Vec<u8>,
    pub header_only: bool,
}

/// An authenticated, selected IMAP session on the watched mailbox.
pub struct ImapSource {
    session: imap::Session<ImapStream>,
    tcp: TcpStream,
    mailbox: String,
    pub uidvalidity: u32,
    has_move: bool,
    has_idle: bool,
    has_uidplus: bool,
    folders: HashSet<String>,
    /// Without MOVE: the UIDs this session copied to their folder and flagged `\Deleted`
    /// that are not expunged yet.
    flagged: HashSet<u32>,
}

impl ImapSource {
    /// Connects, logs in, checks capabilities and selects the mailbox.
    #[tracing::instrument(skip_all, fields(host = %s.host, port = s.port, security = ?s.security), err)]
    pub fn connect(s: &ImapSettings) -> anyhow::Result<Self> {
        let addr = (s.host.as_str(), s.port);
        let tcp = TcpStream::connect(addr)
            .with_context(|| format!("Failed to connect to IMAP server {}:{}", s.host, s.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(120)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(120)))?;
        tcp.set_nodelay(true)?;
        let keep = tcp.try_clone()?;
        let tls = || -> anyhow::Result<(Arc<rustls::ClientConfig>, ServerName<'static>)> {
            let config = crate::tls::client_config(s.ca_file.as_deref())?;
            let name = ServerName::try_from(s.host.clone())
                .with_context(|| format!("imap.host {:?} is not a valid TLS server name", s.host))?;
            Ok((config, name))
        };
        let mut client = match s.security {
            Security::None => {
                let mut c = imap::Client::new(ImapStream::Plain(tcp));
                c.read_greeting().context("IMAP server sent no greeting")?;
                c
            }
            Security::Tls => {
                let (config, name) = tls()?;
                let conn = ClientConnection::new(config, name)?;
                let mut c = imap::Client::new(ImapStream::Tls(Box::new(StreamOwned::new(conn, tcp))));
                c.read_greeting().context("TLS handshake or IMAP greeting failed")?;
                c
            }
            Security::Starttls => {
                let tcp = starttls_handshake(tcp).with_context(|| {
                    format!("STARTTLS with {}:{} failed (imap.security = \"starttls\")", s.host, s.port)
                })?;
                let (config, name) = tls()?;
                let conn = ClientConnection::new(config, name)?;
                let mut c = imap::Client::new(ImapStream::Tls(Box::new(StreamOwned::new(conn, tcp))));
                // The greeting came before STARTTLS; none follows the TLS handshake.
                c.greeting_read = true;
                c
            }
        };
        let caps = client.capabilities().context("CAPABILITY failed")?;
        if caps.has_str("LOGINDISABLED") {
            bail!("IMAP server refuses LOGIN on this connection; use imap.security = \"starttls\" or \"tls\"");
        }
        let mut session = client
            .login(&s.username, s.password.expose_secret())
            .map_err(|(e, _)| anyhow::anyhow!("IMAP login as {} failed: {e}", s.username))?;
        let caps = session.capabilities().context("CAPABILITY after login failed")?;
        let (has_move, has_idle, has_uidplus) = (caps.has_str("MOVE"), caps.has_str("IDLE"), caps.has_str("UIDPLUS"));
        drop(caps);
        let mbox = session
            .select(&s.mailbox)
            .with_context(|| format!("Failed to select mailbox {:?} (imap.mailbox)", s.mailbox))?;
        let uidvalidity = mbox.uid_validity.unwrap_or(0);
        let folders =
            session.list(None, Some("*")).context("LIST failed")?.iter().map(|n| n.name().to_string()).collect();
        tracing::info!(has_move, has_idle, has_uidplus, uidvalidity, "IMAP connected");
        Ok(Self {
            session,
            tcp: keep,
            mailbox: s.mailbox.clone(),
            uidvalidity,
            has_move,
            has_idle,
            has_uidplus,
            folders,
            flagged: HashSet::new(),
        })
    }

    pub fn has_idle(&self) -> bool {
        self.has_idle
    }

    /// Whether the server offers `(IDLE, MOVE, UIDPLUS)`.
    pub fn capabilities(&self) -> (bool, bool, bool) {
        (self.has_idle, self.has_move, self.has_uidplus)
    }

    /// Whether `folder` existed when the session started (or was created by it).
    pub fn has_folder(&self, folder: &str) -> bool {
        self.folders.contains(folder)
    }

    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    /// Every UID in the watched mailbox, ascending. The mailbox is our work queue: what is
    /// filed leaves it, so this stays short.
    pub fn search_all(&mut self) -> anyhow::Result<Vec<u32>> {
        // UNDELETED: on a server without MOVE, a message already copied to its folder and
        // flagged \Deleted (but not yet expunged) is not filed again.
        let mut uids: Vec<u32> =
            self.session.uid_search("UNDELETED").context("UID SEARCH failed")?.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// Sizes and INTERNALDATEs of these UIDs.
    pub fn fetch_meta(&mut self, uids: &[u32]) -> anyhow::Result<Vec<MessageMeta>> {
        let mut out = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(2000) {
            let fetches = self
                .session
                .uid_fetch(uid_set(chunk), "(UID RFC822.SIZE INTERNALDATE)")
                .context("UID FETCH (size) failed")?;
            for f in fetches.iter() {
                if let Some(uid) = f.uid {
                    out.push(MessageMeta {
                        uid,
                        size: u64::from(f.size.unwrap_or(0)),
                        internal_date: f.internal_date().map_or_else(Utc::now, |d| d.with_timezone(&Utc)),
                    });
                }
            }
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// Fetches full messages without setting `\Seen` (`BODY.PEEK[]`).
    pub fn fetch_bodies(&mut self, metas: &[MessageMeta]) -> anyhow::Result<Vec<FetchedMessage>> {
        self.fetch_items(metas, "(UID BODY.PEEK[])", false)
    }

    /// Fetches only the header of messages over the size cap.
    pub fn fetch_headers(&mut self, metas: &[MessageMeta]) -> anyhow::Result<Vec<FetchedMessage>> {
        self.fetch_items(metas, "(UID BODY.PEEK[HEADER])", true)
    }

    fn fetch_items(
        &mut self,
        metas: &[MessageMeta],
        items: &str,
        header_only: bool,
    ) -> anyhow::Result<Vec<FetchedMessage>> {
        if metas.is_empty() {
            return Ok(Vec::new());
        }
        let uids: Vec<u32> = metas.iter().map(|m| m.uid).collect();
        let fetches = self.session.uid_fetch(uid_set(&uids), items).context("UID FETCH (body) failed")?;
        let mut out = Vec::with_capacity(metas.len());
        for f in fetches.iter() {
            let Some(uid) = f.uid else { continue };
            let Some(meta) = metas.iter().find(|m| m.uid == uid) else {
                continue;
            };
            let raw = if header_only { f.header() } else { f.body() };
            out.push(FetchedMessage { meta: *meta, raw: raw.unwrap_or_default().to_vec(), header_only });
        }
        out.sort_by_key(|m| m.meta.uid);
        Ok(out)
    }

    /// Creates `folder` when it does not exist yet.
    pub fn ensure_folder(&mut self, folder: &str) -> anyhow::Result<()> {
        if self.folders.contains(folder) {
            return Ok(());
        }
        match self.session.create(folder) {
            Ok(()) => tracing::info!(folder, "created folder"),
            // It may exist after all (created by someone else meanwhile): LIST decides.
            Err(e) => {
                let exists = self
                    .session
                    .list(None, Some(folder))
                    .map(|n| n.iter().any(|n| n.name() == folder))
                    .unwrap_or(false);
                if !exists {
                    return Err(e).with_context(|| format!("Failed to create folder {folder:?}"));
                }
            }
        }
        let _ = self.session.subscribe(folder);
        self.folders.insert(folder.to_string());
        Ok(())
    }

    /// Moves messages to `folder`: `UID MOVE` (RFC 6851), else `UID COPY` + `\Deleted` +
    /// `UID EXPUNGE` of exactly these (UIDPLUS, RFC 4315). A server with neither gets the
    /// copy and the flag here; [`ImapSource::expunge`] removes them later, when it is safe.
    pub fn move_to(&mut self, uids: &[u32], folder: &str) -> anyhow::Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.ensure_folder(folder)?;
        let set = uid_set(uids);
        if self.has_move {
            self.session.uid_mv(&set, folder).with_context(|| format!("UID MOVE to {folder:?} failed"))?;
        } else {
            self.session.uid_copy(&set, folder).with_context(|| format!("UID COPY to {folder:?} failed"))?;
            self.session.uid_store(&set, "+FLAGS.SILENT (\\Deleted)").context("UID STORE \\Deleted failed")?;
            tracing::debug!(folder, messages = uids.len(), "no MOVE: copied and flagged \\Deleted");
            if self.has_uidplus {
                self.session.uid_expunge(&set).context("UID EXPUNGE failed")?;
            } else {
                self.flagged.extend(uids);
            }
        }
        Ok(())
    }

    /// Whether moving leaves copies flagged `\Deleted` behind (no MOVE): see
    /// `inbox::remove_copied`.
    pub fn copies(&self) -> bool {
        !self.has_move
    }

    /// Whether the server can expunge chosen messages (`UID EXPUNGE`, UIDPLUS).
    pub fn has_uid_expunge(&self) -> bool {
        self.has_uidplus
    }

    /// UIDs flagged `\Deleted` in the watched mailbox, by us or by anyone.
    pub fn search_deleted(&mut self) -> anyhow::Result<Vec<u32>> {
        let mut uids: Vec<u32> =
            self.session.uid_search("DELETED").context("UID SEARCH DELETED failed")?.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The UIDs this session flagged `\Deleted` after copying them, not expunged yet.
    pub fn flagged_by_us(&self) -> &HashSet<u32> {
        &self.flagged
    }

    /// Removes these `\Deleted` messages: `UID EXPUNGE` of exactly them with UIDPLUS;
    /// without it a plain `EXPUNGE`, which removes every `\Deleted` message in the
    /// mailbox, so the caller sends it only when all of those are ours.
    pub fn expunge(&mut self, uids: &[u32]) -> anyhow::Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        if self.has_uidplus {
            self.session.uid_expunge(uid_set(uids)).context("UID EXPUNGE failed")?;
        } else {
            self.session.expunge().context("EXPUNGE failed")?;
        }
        for u in uids {
            self.flagged.remove(u);
        }
        Ok(())
    }

    /// Waits in IDLE until the mailbox changes, `timeout` passes, or `interrupter` fires.
    pub fn idle(&mut self, timeout: Duration, interrupter: &Interrupter) -> anyhow::Result<()> {
        interrupter.arm(self.tcp.try_clone()?);
        let res = self
            .session
            .idle()
            .timeout(timeout)
            .keepalive(false)
            .wait_while(|r| !matches!(r, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)));
        interrupter.disarm();
        match res {
            Ok(WaitOutcome::TimedOut) => {
                tracing::debug!(after = ?timeout, "IDLE timed out; re-issuing");
                Ok(())
            }
            Ok(WaitOutcome::MailboxChanged) => Ok(()),
            Err(e) => Err(e).context("IDLE failed"),
        }
    }

    pub fn logout(mut self) {
        let _ = self.session.logout();
    }
}

/// The step at which [`ImapSource::connect`] failed, read from its error (the texts above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectStep {
    /// No TCP connection: host, port, firewall.
    Reach,
    /// TLS or STARTTLS, or a server that refuses a plain-text login.
    Tls,
    /// The server refused the login.
    Login,
    /// The watched mailbox cannot be selected.
    Mailbox,
    /// Anything else (no greeting, a broken answer).
    Other,
}

impl ConnectStep {
    pub fn of(e: &anyhow::Error) -> Self {
        let text = format!("{e:#}");
        if text.starts_with("Failed to connect to IMAP server") {
            Self::Reach
        } else if text.starts_with("TLS handshake")
            || text.starts_with("STARTTLS")
            || text.contains("not a valid TLS server name")
            || text.contains("refuses LOGIN")
        {
            Self::Tls
        } else if text.starts_with("IMAP login as") {
            Self::Login
        } else if text.starts_with("Failed to select mailbox") {
            Self::Mailbox
        } else {
            Self::Other
        }
    }
}

/// Reads the greeting and upgrades with `STARTTLS` on the plain socket (RFC 3501 6.2.1).
/// Done by hand because the `imap` crate keeps its STARTTLS path private.
fn starttls_handshake(mut tcp: TcpStream) -> anyhow::Result<TcpStream> {
    fn read_line(tcp: &mut TcpStream) -> anyhow::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") {
            if tcp.read(&mut byte)? == 0 {
                bail!("connection closed");
            }
            line.push(byte[0]);
            if line.len() > 64 * 1024 {
                bail!("response line too long");
            }
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }
    let greeting = read_line(&mut tcp)?;
    if !greeting.starts_with("* OK") {
        bail!("unexpected greeting {greeting:?}");
    }
    tcp.write_all(b"o1 STARTTLS\r\n")?;
    loop {
        let line = read_line(&mut tcp)?;
        if let Some(rest) = line.strip_prefix("o1 ") {
            if rest.starts_with("OK") {
                return Ok(tcp);
            }
            bail!("server answered {line:?}; it may not offer STARTTLS");
        }
    }
}

/// A compact UID set: `1:5,7,9:10`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
    }
}
