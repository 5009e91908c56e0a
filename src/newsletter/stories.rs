//! Stories from files: Markdown with a front matter block.
//!
//! ```text
//! ---
//! title: Ga naast de ouders staan
//! ambassador: Fatima El Amrani
//! role: intern begeleider
//! photo: https://example.org/fatima.jpg      (optional, https only)
//! photo_alt: Fatima in de klas                (optional)
//! email: fatima@example.org                   (optional: lets her send stories by mail)
//! ---
//! The story in Markdown.
//! ```

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use crate::domain::EmailAddress;
use crate::domain::ids::StoryId;
use crate::domain::state::{NotNow, StoryStatus};
use crate::store::Store;
use crate::store::stories::NewStory;

/// A parsed story file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoryFile {
    pub title: String,
    pub ambassador: String,
    pub role: String,
    pub photo_url: Option<String>,
    pub photo_alt: Option<String>,
    pub email: Option<String>,
    pub body: String,
}

/// Parses the front matter (`key: value` lines between `---` lines) and the body.
pub fn parse(text: &str) -> anyhow::Result<StoryFile> {
    let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    let Some(rest) = text.strip_prefix("---\n") else {
        bail!(
            "expected a front matter block first: a line `---`, then `title:`, `ambassador:` and `role:`, then `---`"
        );
    };
    let Some((front, body)) = rest.split_once("\n---\n").or_else(|| rest.strip_suffix("\n---").map(|f| (f, ""))) else {
        bail!("the front matter block is not closed with a line `---`");
    };
    let mut s = StoryFile { body: body.trim().to_string(), ..Default::default() };
    for (i, line) in front.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            bail!("front matter line {}: expected `key: value`, found {line:?}", i + 2);
        };
        let v = v.trim().trim_matches('"').trim().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "title" | "titel" => s.title = v,
            "ambassador" | "ambassadeur" => s.ambassador = v,
            "role" | "rol" => s.role = v,
            "photo" | "photo_url" | "foto" => s.photo_url = Some(v).filter(|v| !v.is_empty()),
            "photo_alt" | "foto_alt" => s.photo_alt = Some(v).filter(|v| !v.is_empty()),
            "email" | "e-mail" => s.email = Some(v).filter(|v| !v.is_empty()),
            other => bail!(
                "front matter line {}: unknown key `{other}` (known: title, ambassador, role, photo, photo_alt, email)",
                i + 2
            ),
        }
    }
    if let Some(p) = s.problems().first() {
        match p {
            Problem::Missing(key) => bail!("front matter: `{key}` is required"),
            Problem::NoText => bail!("the story has no text after the front matter"),
            Problem::PhotoUrl => bail!("front matter: `photo` must be an https:// URL, found {:?}", s.photo_url),
        }
    }
    Ok(s)
}

/// What is wrong with a story before it may be added (a file, or the desk's form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A required field is empty: `title` or `ambassador`.
    Missing(&'static str),
    /// The story has no text.
    NoText,
    /// The photo is not an https:// URL.
    PhotoUrl,
}

impl StoryFile {
    /// Everything that keeps this story from being added, in the order of its fields.
    pub fn problems(&self) -> Vec<Problem> {
        let mut found = Vec::new();
        for (key, v) in [("title", &self.title), ("ambassador", &self.ambassador)] {
            if v.trim().is_empty() {
                found.push(Problem::Missing(key));
            }
        }
        if self.body.trim().is_empty() {
            found.push(Problem::NoText);
        }
        if self.photo_url.as_deref().is_some_and(|p| !super::render::safe_url(p)) {
            found.push(Problem::PhotoUrl);
        }
        found
    }
}

/// Adds a story the coordinator gives as a file (`stories add`): its ambassador is
/// added or updated, and the consent is the coordinator's (she adds it).
pub fn add(st: Store<'_>, s: &StoryFile, source: &str, now: DateTime<Utc>) -> anyhow::Result<StoryId> {
    let email = s
        .email
        .as_deref()
        .map(|e| EmailAddress::parse(e).map(|a| a.to_string()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("email: {e}"))?;
    let amb = st.upsert_ambassador(&s.ambassador, &s.role, s.photo_url.as_deref(), email.as_deref(), now)?;
    st.insert_story(
        &NewStory {
            title: &s.title,
            ambassador: amb,
            body_md: &s.body,
            photo_url: s.photo_url.as_deref(),
            photo_alt: s.photo_alt.as_deref(),
            source,
            message: None,
            consent_source: Some(&format!("coordinator: added from {source}")),
        },
        now,
    )
}

/// A story cannot be approved: the ambassador's consent to publish is not on record and
/// none was given with the approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "story {0} has no consent to publish yet: wait for the ambassador's \"ja\" to our reply, or give --consent \"how they agreed\""
)]
pub struct NoConsent(pub StoryId);

/// Approves a story for the next issue, as `by` (`cli` or a desk user's address). Never
/// without the ambassador's consent to publish: it is on record already, or `consent`
/// says how she gave it.
pub fn approve(st: Store<'_>, id: StoryId, consent: Option<&str>, by: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    let s = st.story(id)?.with_context(|| format!("there is no story {id}"))?;
    if !matches!(s.status, StoryStatus::Submitted | StoryStatus::Rejected) {
        return Err(NotNow(format!("story {id} is {} already", s.status)).into());
    }
    if let Some(how) = consent {
        st.record_story_consent(id, &format!("coordinator: {how}"), now)?;
    }
    if consent.is_none() && s.consent_at.is_none() {
        return Err(NoConsent(id).into());
    }
    if s.status == StoryStatus::Rejected {
        st.move_story(id, StoryStatus::Submitted, now)?;
    }
    st.move_story(id, StoryStatus::Approved, now)?;
    st.record_story_decision(id, by)
}

/// Rejects a story that was not published, as `by`; it leaves any issue not yet sent.
pub fn reject(st: Store<'_>, id: StoryId, by: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    let s = st.story(id)?.with_context(|| format!("there is no story {id}"))?;
    if s.status == StoryStatus::Published {
        return Err(NotNow(format!("story {id} was published already")).into());
    }
    st.move_story(id, StoryStatus::Rejected, now)?;
    st.record_story_decision(id, by)
}

/// A story sent by mail: the subject after `Verhaal:` / `Story:`, when it starts so.
pub fn mail_title(subject: &str) -> Option<String> {
    let s = subject.trim();
    for prefix in ["verhaal:", "story:"] {
        if s.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix)) {
            let t = s[prefix.len()..].trim();
            return Some(if t.is_empty() { "(zonder titel)".to_string() } else { t.to_string() });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_and_body_are_read() {
        let s = parse("---\ntitle: Ga naast de ouders staan\nambassador: Fatima\nrole: leerkracht\nphoto: https://e.org/f.jpg\n---\n\nTekst *hier*.\n").unwrap();
        assert_eq!(s.title, "Ga naast de ouders staan");
        assert_eq!(s.ambassador, "Fatima");
        assert_eq!(s.role, "leerkracht");
        assert_eq!(s.photo_url.as_deref(), Some("https://e.org/f.jpg"));
        assert_eq!(s.body, "Tekst *hier*.");
    }

    #[test]
    fn bad_files_get_clear_errors() {
        assert!(parse("geen front matter").unwrap_err().to_string().contains("front matter"));
        assert!(parse("---\ntitle: x\n---\ntekst").unwrap_err().to_string().contains("ambassador"));
        assert!(parse("---\ntitle: x\nambassador: y\nfoo: z\n---\nt").unwrap_err().to_string().contains("foo"));
        assert!(parse("---\ntitle: x\nambassador: y\nphoto: javascript:alert(1)\n---\nt").is_err());
        assert!(parse("---\ntitle: x\nambassador: y\n---\n").unwrap_err().to_string().contains("no text"));
    }

    #[test]
    fn mail_subjects_with_story_prefixes() {
        assert_eq!(mail_title("Verhaal: Samen aan tafel").as_deref(), Some("Samen aan tafel"));
        assert_eq!(mail_title("STORY: Side by side").as_deref(), Some("Side by side"));
        assert_eq!(mail_title("Re: Verhaal: x"), None);
        assert_eq!(mail_title("Vraag"), None);
        assert_eq!(mail_title("こんにちは"), None);
        assert_eq!(mail_title("Verhaal:こんにちは").as_deref(), Some("こんにちは"));
    }
}
