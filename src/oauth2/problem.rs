//! Failures that speak: every known refusal of a token endpoint, an IMAP server or an
//! SMTP server while logging in, as one sentence saying what to fix. `outreach status`,
//! the log and the coordinator's notice show that sentence, followed by what the server
//! said (never a token or a secret: only the error texts of servers are kept).
//!
//! The sentences are English, like the rest of `status` and the log: the person who fixes
//! them administers the tenant or the server.

use std::fmt;

/// What kind of refusal it is; each has one sentence (see [`ProblemKind::advice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The mail server refused the token: issued for another resource (Graph) or scope.
    WrongScope,
    /// Logged in, but the app may not open this mailbox.
    NoMailboxPermission,
    /// `535 5.7.139`: SMTP AUTH is off for the tenant or the mailbox.
    SmtpAuthDisabled,
    /// `550 5.7.30`: a password (basic authentication) is no longer accepted.
    BasicAuthRefused,
    /// `AADSTS7000222`: the client secret has expired.
    SecretExpired,
    /// `AADSTS65001`: no (admin) consent for the app's permissions.
    ConsentMissing,
    /// `AADSTS7000215`, `invalid_client`: a wrong secret or client id.
    InvalidClient,
    /// `invalid_grant`: the stored login (refresh token) was revoked or expired.
    LoginRevoked,
    /// Device-code flow without a stored login.
    NotLoggedIn,
    /// The token endpoint cannot be reached (DNS, connection, TLS, timeout).
    Unreachable,
    /// The token endpoint refused for another reason.
    TokenRefused,
    /// The mail server refused the login for another reason.
    Rejected,
}

impl ProblemKind {
    /// A short stable code, for `status --json` and the store.
    pub fn code(self) -> &'static str {
        match self {
            Self::WrongScope => "wrong_scope",
            Self::NoMailboxPermission => "no_mailbox_permission",
            Self::SmtpAuthDisabled => "smtp_auth_disabled",
            Self::BasicAuthRefused => "basic_auth_refused",
            Self::SecretExpired => "secret_expired",
            Self::ConsentMissing => "consent_missing",
            Self::InvalidClient => "invalid_client",
            Self::LoginRevoked => "login_revoked",
            Self::NotLoggedIn => "not_logged_in",
            Self::Unreachable => "token_endpoint_unreachable",
            Self::TokenRefused => "token_refused",
            Self::Rejected => "login_rejected",
        }
    }

    /// What to fix, in one sentence.
    pub fn advice(self) -> &'static str {
        match self {
            Self::WrongScope => {
                "The mail server refused the token (AUTHENTICATE failed): it was issued for another resource or scope; for Microsoft 365 ask for https://outlook.office365.com/.default (client credentials) or the outlook.office.com IMAP and SMTP scopes (device code), not Microsoft Graph, and check oauth2.scope and that the app has the IMAP/SMTP permission."
            }
            Self::NoMailboxPermission => {
                "The app logged in but may not open this mailbox: give its service principal access to the mailbox in Exchange Online (New-ServicePrincipal, then Add-MailboxPermission with FullAccess) and check imap.username."
            }
            Self::SmtpAuthDisabled => {
                "SMTP AUTH is switched off for this tenant or mailbox (535 5.7.139): turn it on for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false) or in the tenant's settings."
            }
            Self::BasicAuthRefused => {
                "The server no longer accepts a password here (basic authentication refused, 5.7.30): set smtp.auth and imap.auth to \"oauth2\" and fill in [oauth2]."
            }
            Self::SecretExpired => {
                "The app's client secret has expired (AADSTS7000222): make a new one in Entra (App registrations, Certificates & secrets) and put it in OUTREACH_OAUTH2__CLIENT_SECRET or oauth2.client_secret_file."
            }
            Self::ConsentMissing => {
                "Consent for the app's permissions is missing (AADSTS65001): an administrator must grant admin consent under API permissions in Entra (IMAP.AccessAsApp and SMTP.SendAsApp, or the delegated IMAP and SMTP permissions)."
            }
            Self::InvalidClient => {
                "The token endpoint refused the app's credentials (invalid client): check oauth2.client_id, oauth2.tenant and the client secret (its value, not its id)."
            }
            Self::LoginRevoked => {
                "The stored login is no longer valid (revoked, expired, or the password changed): run `outreach login` again."
            }
            Self::NotLoggedIn => "No login is stored yet: run `outreach login` (oauth2.flow = \"device_code\").",
            Self::Unreachable => {
                "The token endpoint cannot be reached: check the network (DNS, firewall, proxy) and oauth2.tenant or oauth2.token_url."
            }
            Self::TokenRefused => {
                "The token endpoint refused to give a token: check the [oauth2] settings against what it said."
            }
            Self::Rejected => "The mail server refused the login: check the account against what it said.",
        }
    }

    /// The kind for a stored code.
    pub fn from_code(code: &str) -> Option<Self> {
        ALL.iter().copied().find(|k| k.code() == code)
    }
}

const ALL: [ProblemKind; 12] = [
    ProblemKind::WrongScope,
    ProblemKind::NoMailboxPermission,
    ProblemKind::SmtpAuthDisabled,
    ProblemKind::BasicAuthRefused,
    ProblemKind::SecretExpired,
    ProblemKind::ConsentMissing,
    ProblemKind::InvalidClient,
    ProblemKind::LoginRevoked,
    ProblemKind::NotLoggedIn,
    ProblemKind::Unreachable,
    ProblemKind::TokenRefused,
    ProblemKind::Rejected,
];

/// A login that failed: its kind and what the other side said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthProblem {
    pub kind: ProblemKind,
    /// What the token endpoint or the server said, on one line (may be empty).
    pub said: String,
}

impl AuthProblem {
    pub fn new(kind: ProblemKind, said: impl AsRef<str>) -> Self {
        Self { kind, said: one_line(said.as_ref()) }
    }

    /// A refusal named by a server's or endpoint's own words, when it is a known one:
    /// Entra's `AADSTS` codes, Exchange's SMTP enhanced codes, Exchange's IMAP texts.
    pub fn known(said: &str) -> Option<Self> {
        let kind = if said.contains("AADSTS7000222") {
            ProblemKind::SecretExpired
        } else if said.contains("AADSTS65001") {
            ProblemKind::ConsentMissing
        } else if said.contains("AADSTS7000215") || said.contains("AADSTS700016") || said.contains("invalid_client") {
            ProblemKind::InvalidClient
        } else if said.contains("5.7.139") {
            ProblemKind::SmtpAuthDisabled
        } else if said.contains("5.7.30") || said.contains("Basic authentication is not supported") {
            ProblemKind::BasicAuthRefused
        } else if said.contains("User is authenticated but not connected") {
            ProblemKind::NoMailboxPermission
        } else {
            return None;
        };
        Some(Self::new(kind, said))
    }

    /// A refusal of the token by the mail server (IMAP `AUTHENTICATE`, SMTP `AUTH`): a
    /// known one, else the token does not fit the server (wrong resource or scope).
    pub fn token_refused_by_server(said: &str) -> Self {
        Self::known(said).unwrap_or_else(|| Self::new(ProblemKind::WrongScope, said))
    }

    /// A refusal of a password login: a known one, else a plain refusal.
    pub fn password_refused(said: &str) -> Option<Self> {
        Self::known(said)
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

impl fmt::Display for AuthProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.advice())?;
        if !self.said.is_empty() {
            write!(f, " (it said: {})", self.said)?;
        }
        Ok(())
    }
}

impl std::error::Error for AuthProblem {}

/// The first line of a server's text, without control characters, at most 300 characters
/// (Entra appends trace and correlation ids on further lines); of an Entra error only its
/// first sentence (`AADSTS7000215: Invalid client secret provided.`), the rest is advice
/// of its own.
fn one_line(s: &str) -> String {
    let mut first = s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if let Some(at) = first.find("AADSTS")
        && let Some(end) = first[at..].find(". ")
    {
        first = &first[..at + end + 1];
    }
    let clean: String = first.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut out: String = clean.chars().take(300).collect();
    if clean.chars().count() > 300 {
        out.push('…');
    }
    crate::domain::redact_addresses(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_known_refusal_gets_its_sentence() {
        let cases = [
            (
                "invalid_client: AADSTS7000222: The provided client secret keys for app 'x' are expired.\r\nTrace ID: 1",
                ProblemKind::SecretExpired,
                "expired",
            ),
            (
                "invalid_grant: AADSTS65001: The user or administrator has not consented",
                ProblemKind::ConsentMissing,
                "consent",
            ),
            (
                "invalid_client: AADSTS7000215: Invalid client secret provided. Ensure the secret being sent is the value.",
                ProblemKind::InvalidClient,
                "AADSTS7000215: Invalid client secret provided.)",
            ),
            (
                "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
                ProblemKind::SmtpAuthDisabled,
                "Set-CASMailbox",
            ),
            (
                "550 5.7.30 Basic authentication is not supported for Client Submission.",
                ProblemKind::BasicAuthRefused,
                "oauth2",
            ),
            ("NO User is authenticated but not connected.", ProblemKind::NoMailboxPermission, "Add-MailboxPermission"),
        ];
        for (said, kind, hint) in cases {
            let p = AuthProblem::known(said).unwrap_or_else(|| panic!("{said}"));
            assert_eq!(p.kind, kind, "{said}");
            let text = p.to_string();
            assert!(text.contains(hint), "{text}");
            assert!(!text.contains("Trace ID"), "only the first line of what was said: {text}");
        }
        let p = AuthProblem::token_refused_by_server("NO AUTHENTICATE failed.");
        assert_eq!(p.kind, ProblemKind::WrongScope);
        assert!(p.to_string().starts_with("The mail server refused the token (AUTHENTICATE failed)"));
        assert!(AuthProblem::known("NO [AUTHENTICATIONFAILED] Authentication failed.").is_none());
    }

    #[test]
    fn codes_come_back_as_their_kind_and_addresses_are_cut() {
        for k in ALL {
            assert_eq!(ProblemKind::from_code(k.code()), Some(k));
            assert!(k.advice().ends_with('.'), "{k:?}");
        }
        let p = AuthProblem::new(ProblemKind::Rejected, "NO login as ann@example.nl refused");
        assert!(p.to_string().contains("…@example.nl") && !p.to_string().contains("ann@"));
    }
}
