//! Every text a person reads, as handlebars templates in `templates/`.
//!
//! The defaults are embedded in the binary; `[templates] dir` may hold files with the same
//! relative names that replace them, so an operator can edit texts without recompiling.

use std::path::Path;

use anyhow::Context;
use handlebars::Handlebars;
use serde::Serialize;

use crate::domain::{Category, Language};

/// Built-in templates: (name, text). Names are paths below `templates/`.
const BUILTIN: &[(&str, &str)] = &[
    ("reply/join.nl.txt", include_str!("../templates/reply/join.nl.txt")),
    ("reply/join.en.txt", include_str!("../templates/reply/join.en.txt")),
    ("reply/question.nl.txt", include_str!("../templates/reply/question.nl.txt")),
    ("reply/question.en.txt", include_str!("../templates/reply/question.en.txt")),
    ("reply/unsubscribe.nl.txt", include_str!("../templates/reply/unsubscribe.nl.txt")),
    ("reply/unsubscribe.en.txt", include_str!("../templates/reply/unsubscribe.en.txt")),
    ("reply/story.nl.txt", include_str!("../templates/reply/story.nl.txt")),
    ("reply/story.en.txt", include_str!("../templates/reply/story.en.txt")),
    ("notice/breaker.nl.txt", include_str!("../templates/notice/breaker.nl.txt")),
    ("notice/no_stories.nl.txt", include_str!("../templates/notice/no_stories.nl.txt")),
    ("notice/proof.nl.txt", include_str!("../templates/notice/proof.nl.txt")),
    ("subscribe/confirm.nl.txt", include_str!("../templates/subscribe/confirm.nl.txt")),
    ("subscribe/confirm.en.txt", include_str!("../templates/subscribe/confirm.en.txt")),
    ("subscribe/welcome.nl.txt", include_str!("../templates/subscribe/welcome.nl.txt")),
    ("subscribe/welcome.en.txt", include_str!("../templates/subscribe/welcome.en.txt")),
    ("subscribe/unsubscribed.nl.txt", include_str!("../templates/subscribe/unsubscribed.nl.txt")),
    ("subscribe/unsubscribed.en.txt", include_str!("../templates/subscribe/unsubscribed.en.txt")),
];

pub struct Templates {
    hb: Handlebars<'static>,
}

/// What an auto-reply template may use.
#[derive(Debug, Serialize)]
pub struct ReplyData<'a> {
    /// The sender's display name, cleaned of control characters; may be empty.
    pub name: &'a str,
    pub subject: &'a str,
    pub case_ref: &'a str,
    /// For the story reply: whether consent for a photo is asked too.
    pub has_photo: bool,
}

impl Templates {
    /// Loads the built-in templates, then the overrides in `dir` (if any).
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        // Plain-text templates: no HTML escaping. Values are cleaned before rendering.
        hb.register_escape_fn(handlebars::no_escape);
        for (name, text) in BUILTIN {
            let text = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("Failed to read template {}", path.display()))?,
                None => (*text).to_string(),
            };
            hb.register_template_string(name, text).with_context(|| format!("Template {name} does not parse"))?;
        }
        Ok(Self { hb })
    }

    /// Renders the auto-reply body for a category and language.
    pub fn reply(&self, category: Category, language: Language, data: &ReplyData<'_>) -> anyhow::Result<String> {
        let name = format!("reply/{}.{}.txt", category.as_str(), language.code());
        self.hb.render(&name, data).with_context(|| format!("Failed to render template {name}"))
    }

    /// Renders any template by name.
    pub fn render(&self, name: &str, data: &impl Serialize) -> anyhow::Result<String> {
        self.hb.render(name, data).with_context(|| format!("Failed to render template {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reply_template_renders_in_both_languages() {
        let t = Templates::load(None).unwrap();
        for c in [Category::Join, Category::Question, Category::Unsubscribe, Category::Story] {
            for l in [Language::Dutch, Language::English] {
                let with = t
                    .reply(c, l, &ReplyData { name: "Ann", subject: "x", case_ref: "[MAO-7]", has_photo: false })
                    .unwrap();
                assert!(with.contains("Ann") && with.contains("[MAO-7]"), "{c} {l:?}: {with}");
                let without = t
                    .reply(c, l, &ReplyData { name: "", subject: "x", case_ref: "[MAO-7]", has_photo: false })
                    .unwrap();
                assert!(without.starts_with("Hallo,") || without.starts_with("Hello,"), "{without}");
            }
        }
        let nl = t
            .reply(
                Category::Join,
                Language::Dutch,
                &ReplyData { name: "", subject: "", case_ref: "[MAO-1]", has_photo: false },
            )
            .unwrap();
        assert!(nl.contains("aanmelding") && nl.contains("automatisch antwoord"));
        let en = t
            .reply(
                Category::Question,
                Language::English,
                &ReplyData { name: "", subject: "", case_ref: "[MAO-1]", has_photo: false },
            )
            .unwrap();
        assert!(en.contains("automatic reply"));
    }

    #[test]
    fn overrides_replace_builtin_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("reply")).unwrap();
        std::fs::write(dir.path().join("reply/question.nl.txt"), "Eigen tekst {{case_ref}}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let s = t
            .reply(
                Category::Question,
                Language::Dutch,
                &ReplyData { name: "", subject: "", case_ref: "[MAO-2]", has_photo: false },
            )
            .unwrap();
        assert_eq!(s, "Eigen tekst [MAO-2]");
    }

    #[test]
    fn a_template_with_an_unknown_variable_fails_loudly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("reply")).unwrap();
        std::fs::write(dir.path().join("reply/question.nl.txt"), "{{typo}}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        assert!(
            t.reply(
                Category::Question,
                Language::Dutch,
                &ReplyData { name: "", subject: "", case_ref: "", has_photo: false }
            )
            .is_err()
        );
    }
}
