//! Every text a person reads, as handlebars templates in `templates/`: auto-replies,
//! notices, subscription mails, the newsletter and the web pages. One registry, one
//! list, one override rule.
//!
//! The defaults are embedded in the binary; `[templates] dir` may hold files with the same
//! relative paths that replace them, so an operator can edit texts without recompiling.
//! Templates whose name says `.txt` are plain text (no escaping: values are cleaned
//! before rendering); all others are HTML, escaped by handlebars.

use std::path::Path;

use anyhow::Context;
use handlebars::Handlebars;
use serde::Serialize;

use crate::domain::{Category, Language};

/// Built-in templates: (name, path below `templates/`, text).
const BUILTIN: &[(&str, &str, &str)] = &[
    ("desk/login.nl.txt", "desk/login.nl.txt", include_str!("../templates/desk/login.nl.txt")),
    ("newsletter/footer.html", "newsletter/footer.html.hbs", include_str!("../templates/newsletter/footer.html.hbs")),
    ("newsletter/footer.txt", "newsletter/footer.txt.hbs", include_str!("../templates/newsletter/footer.txt.hbs")),
    ("newsletter/intro.html", "newsletter/intro.html.hbs", include_str!("../templates/newsletter/intro.html.hbs")),
    ("newsletter/intro.txt", "newsletter/intro.txt.hbs", include_str!("../templates/newsletter/intro.txt.hbs")),
    ("newsletter/layout.html", "newsletter/layout.html.hbs", include_str!("../templates/newsletter/layout.html.hbs")),
    ("newsletter/layout.txt", "newsletter/layout.txt.hbs", include_str!("../templates/newsletter/layout.txt.hbs")),
    ("newsletter/story.html", "newsletter/story.html.hbs", include_str!("../templates/newsletter/story.html.hbs")),
    ("newsletter/story.txt", "newsletter/story.txt.hbs", include_str!("../templates/newsletter/story.txt.hbs")),
    ("notice/breaker.nl.txt", "notice/breaker.nl.txt", include_str!("../templates/notice/breaker.nl.txt")),
    ("notice/mailbox.nl.txt", "notice/mailbox.nl.txt", include_str!("../templates/notice/mailbox.nl.txt")),
    ("notice/login.nl.txt", "notice/login.nl.txt", include_str!("../templates/notice/login.nl.txt")),
    ("notice/digest.nl.txt", "notice/digest.nl.txt", include_str!("../templates/notice/digest.nl.txt")),
    ("notice/no_stories.nl.txt", "notice/no_stories.nl.txt", include_str!("../templates/notice/no_stories.nl.txt")),
    ("notice/proof.nl.txt", "notice/proof.nl.txt", include_str!("../templates/notice/proof.nl.txt")),
    ("notice/suspect.nl.txt", "notice/suspect.nl.txt", include_str!("../templates/notice/suspect.nl.txt")),
    ("reply/join.en.txt", "reply/join.en.txt", include_str!("../templates/reply/join.en.txt")),
    ("reply/join.nl.txt", "reply/join.nl.txt", include_str!("../templates/reply/join.nl.txt")),
    ("reply/question.en.txt", "reply/question.en.txt", include_str!("../templates/reply/question.en.txt")),
    ("reply/question.nl.txt", "reply/question.nl.txt", include_str!("../templates/reply/question.nl.txt")),
    ("reply/story.en.txt", "reply/story.en.txt", include_str!("../templates/reply/story.en.txt")),
    ("reply/story.nl.txt", "reply/story.nl.txt", include_str!("../templates/reply/story.nl.txt")),
    ("reply/unsubscribe.en.txt", "reply/unsubscribe.en.txt", include_str!("../templates/reply/unsubscribe.en.txt")),
    ("reply/unsubscribe.nl.txt", "reply/unsubscribe.nl.txt", include_str!("../templates/reply/unsubscribe.nl.txt")),
    ("subscribe/confirm.en.txt", "subscribe/confirm.en.txt", include_str!("../templates/subscribe/confirm.en.txt")),
    ("subscribe/confirm.nl.txt", "subscribe/confirm.nl.txt", include_str!("../templates/subscribe/confirm.nl.txt")),
    (
        "subscribe/unsubscribed.en.txt",
        "subscribe/unsubscribed.en.txt",
        include_str!("../templates/subscribe/unsubscribed.en.txt"),
    ),
    (
        "subscribe/unsubscribed.nl.txt",
        "subscribe/unsubscribed.nl.txt",
        include_str!("../templates/subscribe/unsubscribed.nl.txt"),
    ),
    ("subscribe/welcome.en.txt", "subscribe/welcome.en.txt", include_str!("../templates/subscribe/welcome.en.txt")),
    ("subscribe/welcome.nl.txt", "subscribe/welcome.nl.txt", include_str!("../templates/subscribe/welcome.nl.txt")),
    (
        "web/already_active.en.html",
        "web/already_active.en.html.hbs",
        include_str!("../templates/web/already_active.en.html.hbs"),
    ),
    (
        "web/already_active.nl.html",
        "web/already_active.nl.html.hbs",
        include_str!("../templates/web/already_active.nl.html.hbs"),
    ),
    (
        "web/already_out.en.html",
        "web/already_out.en.html.hbs",
        include_str!("../templates/web/already_out.en.html.hbs"),
    ),
    (
        "web/already_out.nl.html",
        "web/already_out.nl.html.hbs",
        include_str!("../templates/web/already_out.nl.html.hbs"),
    ),
    ("web/archive.nl.html", "web/archive.nl.html.hbs", include_str!("../templates/web/archive.nl.html.hbs")),
    ("web/confirm.en.html", "web/confirm.en.html.hbs", include_str!("../templates/web/confirm.en.html.hbs")),
    ("web/confirm.nl.html", "web/confirm.nl.html.hbs", include_str!("../templates/web/confirm.nl.html.hbs")),
    ("web/confirmed.en.html", "web/confirmed.en.html.hbs", include_str!("../templates/web/confirmed.en.html.hbs")),
    ("web/confirmed.nl.html", "web/confirmed.nl.html.hbs", include_str!("../templates/web/confirmed.nl.html.hbs")),
    ("web/desk/_csrf.html", "web/desk/_csrf.html.hbs", include_str!("../templates/web/desk/_csrf.html.hbs")),
    ("web/desk/_errors.html", "web/desk/_errors.html.hbs", include_str!("../templates/web/desk/_errors.html.hbs")),
    ("web/desk/_flash.html", "web/desk/_flash.html.hbs", include_str!("../templates/web/desk/_flash.html.hbs")),
    ("web/desk/_look.html", "web/desk/_look.html.hbs", include_str!("../templates/web/desk/_look.html.hbs")),
    (
        "web/desk/_proof_actions.html",
        "web/desk/_proof_actions.html.hbs",
        include_str!("../templates/web/desk/_proof_actions.html.hbs"),
    ),
    ("web/desk/issue.html", "web/desk/issue.html.hbs", include_str!("../templates/web/desk/issue.html.hbs")),
    (
        "web/desk/newsletter.html",
        "web/desk/newsletter.html.hbs",
        include_str!("../templates/web/desk/newsletter.html.hbs"),
    ),
    ("web/desk/person.html", "web/desk/person.html.hbs", include_str!("../templates/web/desk/person.html.hbs")),
    (
        "web/desk/person_erased.html",
        "web/desk/person_erased.html.hbs",
        include_str!("../templates/web/desk/person_erased.html.hbs"),
    ),
    ("web/desk/stories.html", "web/desk/stories.html.hbs", include_str!("../templates/web/desk/stories.html.hbs")),
    ("web/desk/story.html", "web/desk/story.html.hbs", include_str!("../templates/web/desk/story.html.hbs")),
    (
        "web/desk/story_new.html",
        "web/desk/story_new.html.hbs",
        include_str!("../templates/web/desk/story_new.html.hbs"),
    ),
    (
        "web/desk/subscriber.html",
        "web/desk/subscriber.html.hbs",
        include_str!("../templates/web/desk/subscriber.html.hbs"),
    ),
    (
        "web/desk/subscribers.html",
        "web/desk/subscribers.html.hbs",
        include_str!("../templates/web/desk/subscribers.html.hbs"),
    ),
    (
        "web/desk/_described.html",
        "web/desk/_described.html.hbs",
        include_str!("../templates/web/desk/_described.html.hbs"),
    ),
    ("web/desk/_field.html", "web/desk/_field.html.hbs", include_str!("../templates/web/desk/_field.html.hbs")),
    ("web/desk/_item.html", "web/desk/_item.html.hbs", include_str!("../templates/web/desk/_item.html.hbs")),
    ("web/desk/_layout.html", "web/desk/_layout.html.hbs", include_str!("../templates/web/desk/_layout.html.hbs")),
    (
        "web/desk/accessibility.html",
        "web/desk/accessibility.html.hbs",
        include_str!("../templates/web/desk/accessibility.html.hbs"),
    ),
    (
        "web/desk/conversation.html",
        "web/desk/conversation.html.hbs",
        include_str!("../templates/web/desk/conversation.html.hbs"),
    ),
    (
        "web/desk/conversations.html",
        "web/desk/conversations.html.hbs",
        include_str!("../templates/web/desk/conversations.html.hbs"),
    ),
    ("web/desk/login.html", "web/desk/login.html.hbs", include_str!("../templates/web/desk/login.html.hbs")),
    (
        "web/desk/login_link.html",
        "web/desk/login_link.html.hbs",
        include_str!("../templates/web/desk/login_link.html.hbs"),
    ),
    ("web/desk/message.html", "web/desk/message.html.hbs", include_str!("../templates/web/desk/message.html.hbs")),
    ("web/desk/overview.html", "web/desk/overview.html.hbs", include_str!("../templates/web/desk/overview.html.hbs")),
    ("web/layout.html", "web/layout.html.hbs", include_str!("../templates/web/layout.html.hbs")),
    (
        "web/link_expired.nl.html",
        "web/link_expired.nl.html.hbs",
        include_str!("../templates/web/link_expired.nl.html.hbs"),
    ),
    (
        "web/link_invalid.nl.html",
        "web/link_invalid.nl.html.hbs",
        include_str!("../templates/web/link_invalid.nl.html.hbs"),
    ),
    ("web/not_found.nl.html", "web/not_found.nl.html.hbs", include_str!("../templates/web/not_found.nl.html.hbs")),
    (
        "web/not_pending.en.html",
        "web/not_pending.en.html.hbs",
        include_str!("../templates/web/not_pending.en.html.hbs"),
    ),
    (
        "web/not_pending.nl.html",
        "web/not_pending.nl.html.hbs",
        include_str!("../templates/web/not_pending.nl.html.hbs"),
    ),
    (
        "web/unavailable.nl.html",
        "web/unavailable.nl.html.hbs",
        include_str!("../templates/web/unavailable.nl.html.hbs"),
    ),
    (
        "web/unsubscribe.en.html",
        "web/unsubscribe.en.html.hbs",
        include_str!("../templates/web/unsubscribe.en.html.hbs"),
    ),
    (
        "web/unsubscribe.nl.html",
        "web/unsubscribe.nl.html.hbs",
        include_str!("../templates/web/unsubscribe.nl.html.hbs"),
    ),
    (
        "web/unsubscribed.en.html",
        "web/unsubscribed.en.html.hbs",
        include_str!("../templates/web/unsubscribed.en.html.hbs"),
    ),
    (
        "web/unsubscribed.nl.html",
        "web/unsubscribed.nl.html.hbs",
        include_str!("../templates/web/unsubscribed.nl.html.hbs"),
    ),
];

/// The texts of the desk's pages per language (`{{t.KEY}}` in its templates): one
/// template per page, its words from here.
const TEXTS: &[(Language, &str, &str)] = &[
    (Language::Dutch, "web/desk/texts.nl.json", include_str!("../templates/web/desk/texts.nl.json")),
    (Language::English, "web/desk/texts.en.json", include_str!("../templates/web/desk/texts.en.json")),
];

/// Files served as they are: (path below `templates/`, text).
const ASSETS: &[(&str, &str)] = &[("web/desk/desk.css", include_str!("../templates/web/desk/desk.css"))];

pub struct Templates {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
    texts: Vec<(Language, serde_json::Value)>,
    assets: Vec<(&'static str, String)>,
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
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);
        for (name, path, builtin) in BUILTIN {
            let body = read_override(dir, path)?.unwrap_or_else(|| (*builtin).to_string());
            let reg = if is_text(name) { &mut text } else { &mut html };
            if let Some(partial) = partial_name(name) {
                // The web pages wrap themselves in a layout: `{{#> layout title="..."}}...{{/layout}}`.
                reg.register_partial(&partial, &body).with_context(|| format!("Template {path} does not parse"))?;
            }
            reg.register_template_string(name, body).with_context(|| format!("Template {path} does not parse"))?;
        }
        let mut texts = Vec::new();
        for (language, path, builtin) in TEXTS {
            let body = read_override(dir, path)?.unwrap_or_else(|| (*builtin).to_string());
            let value: serde_json::Value =
                serde_json::from_str(&body).with_context(|| format!("Texts {path} are not valid JSON"))?;
            texts.push((*language, value));
        }
        let mut assets = Vec::new();
        for (path, builtin) in ASSETS {
            assets.push((*path, read_override(dir, path)?.unwrap_or_else(|| (*builtin).to_string())));
        }
        Ok(Self { html, text, texts, assets })
    }

    /// The desk's texts in `language` (Dutch when there are none in it).
    pub fn texts(&self, language: Language) -> &serde_json::Value {
        self.texts
            .iter()
            .find(|(l, _)| *l == language)
            .or_else(|| self.texts.iter().find(|(l, _)| *l == Language::Dutch))
            .map(|(_, v)| v)
            .expect("the Dutch texts are built in")
    }

    /// A file served as it is (a style sheet), by its path below `templates/`.
    pub fn asset(&self, path: &str) -> Option<&str> {
        self.assets.iter().find(|(p, _)| *p == path).map(|(_, t)| t.as_str())
    }

    /// Whether a template of this name exists.
    pub fn has(&self, name: &str) -> bool {
        if is_text(name) { self.text.has_template(name) } else { self.html.has_template(name) }
    }

    /// Renders the auto-reply body for a category and language.
    pub fn reply(&self, category: Category, language: Language, data: &ReplyData<'_>) -> anyhow::Result<String> {
        self.render(&format!("reply/{}.{}.txt", category.as_str(), language.code()), data)
    }

    /// Renders any template by name.
    pub fn render(&self, name: &str, data: &impl Serialize) -> anyhow::Result<String> {
        let reg = if is_text(name) { &self.text } else { &self.html };
        reg.render(name, data).with_context(|| format!("Failed to render template {name}"))
    }

    /// Renders a web page `web/<page>.<lang>.html`, falling back to Dutch when the page
    /// has no version in `language`.
    pub fn page(&self, page: &str, language: Language, data: &impl Serialize) -> anyhow::Result<String> {
        let name = format!("web/{page}.{}.html", language.code());
        let name = if self.has(&name) { name } else { format!("web/{page}.nl.html") };
        self.render(&name, data)
    }
}

/// The override of `path` in `dir`, if there is one.
fn read_override(dir: Option<&Path>, path: &str) -> anyhow::Result<Option<String>> {
    match dir.map(|d| d.join(path)).filter(|p| p.is_file()) {
        Some(file) => Ok(Some(
            std::fs::read_to_string(&file).with_context(|| format!("Failed to read template {}", file.display()))?,
        )),
        None => Ok(None),
    }
}

/// The partial a template is also registered as: `web/layout.html` as `layout`, and
/// `web/<dir>/_<name>.html` as `<dir>/<name>` (the desk's `{{> desk/csrf}}`).
fn partial_name(name: &str) -> Option<String> {
    if name == "web/layout.html" {
        return Some("layout".into());
    }
    let rest = name.strip_prefix("web/")?.strip_suffix(".html")?;
    let (dir, file) = rest.rsplit_once('/')?;
    file.strip_prefix('_').map(|f| format!("{dir}/{f}"))
}

/// Plain-text templates: `reply/join.nl.txt`, `newsletter/layout.txt`.
fn is_text(name: &str) -> bool {
    name.ends_with(".txt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_web_page_renders_escaped_in_its_layout() {
        let t = Templates::load(None).unwrap();
        #[derive(Serialize)]
        struct Data<'a> {
            lang: &'a str,
            title: &'a str,
            issues: Vec<()>,
        }
        for (path, _, _) in BUILTIN
            .iter()
            .filter(|(n, _, _)| n.starts_with("web/") && !n.starts_with("web/desk/") && *n != "web/layout.html")
        {
            let html = t.render(path, &Data { lang: "nl", title: "<b>", issues: vec![] }).unwrap();
            assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<h1>"), "{path}: {html}");
            assert!(!html.contains("<b>"), "{path}: a value is escaped");
        }
        let en = t.page("confirmed", Language::English, &Data { lang: "en", title: "", issues: vec![] }).unwrap();
        assert!(en.contains("Thank you"));
        let fallback = t.page("not_found", Language::English, &Data { lang: "en", title: "", issues: vec![] }).unwrap();
        assert!(fallback.contains("Niet gevonden"));
    }

    #[test]
    fn the_desk_texts_have_the_same_keys_in_both_languages_and_partials_their_names() {
        fn keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
            if let Some(map) = v.as_object() {
                for (k, x) in map {
                    out.push(format!("{prefix}{k}"));
                    keys(x, &format!("{prefix}{k}."), out);
                }
            }
        }
        let t = Templates::load(None).unwrap();
        let (mut nl, mut en) = (Vec::new(), Vec::new());
        keys(t.texts(Language::Dutch), "", &mut nl);
        keys(t.texts(Language::English), "", &mut en);
        assert!(nl.len() > 100, "{}", nl.len());
        assert_eq!(nl, en, "the same keys in texts.nl.json and texts.en.json");
        assert_eq!(t.texts(Language::Dutch)["status"]["in behandeling"], "In behandeling");
        assert_eq!(partial_name("web/layout.html").as_deref(), Some("layout"));
        assert_eq!(partial_name("web/desk/_csrf.html").as_deref(), Some("desk/csrf"));
        assert_eq!(partial_name("web/desk/overview.html"), None);
        assert!(t.asset("web/desk/desk.css").unwrap().contains(":focus-visible"));
    }

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
