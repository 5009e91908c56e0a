//! Renders newsletter issues: handlebars templates from `templates/newsletter/`, story
//! Markdown through pulldown-cmark and ammonia, CSS inlined with css-inline.
//!
//! An issue is rendered once per language into a [`Skeleton`] in which the personal
//! parts (name, unsubscribe link) are markers; at send time [`Skeleton::personalize`]
//! fills them in for one subscriber. So every subscriber's copy is made when it is sent
//! (none is stored), and the expensive steps (templates, CSS inlining) run once.

use std::sync::Arc;

use anyhow::Context;
use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde::Serialize;

use crate::domain::Language;
use crate::store::stories::Story;
use crate::templates::Templates;

const NAME_MARK: &str = "OUTREACHxNAMExMARK";
const UNSUB_MARK: &str = "OUTREACHxUNSUBxMARK";

/// Renders issues with the shared templates (`templates/newsletter/`).
pub struct Renderer {
    templates: Arc<Templates>,
}

/// An issue's content, the same for every subscriber.
#[derive(Debug, Clone)]
pub struct IssueContent {
    pub title: String,
    pub subject: String,
    /// The month (0-11) and year of the issue, shown under its title.
    pub month0: u32,
    pub year: i32,
    pub stories: Vec<Story>,
    pub archive_url: String,
    pub from_address: String,
}

/// One issue in one language, with markers for the personal parts.
#[derive(Debug, Clone)]
pub struct Skeleton {
    pub language: Language,
    html: String,
    text: String,
    /// The same, quoted-printable encoded once, in pieces around the markers.
    html_qp: Vec<Piece>,
    text_qp: Vec<Piece>,
}

/// A piece of a pre-encoded part: encoded text, or a personal value to fill in.
#[derive(Debug, Clone)]
enum Piece {
    Encoded(Vec<u8>),
    Name,
    Unsubscribe,
}

/// Splits a rendered part at the markers and encodes the fixed pieces.
fn pre_encode(s: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = s;
    loop {
        let next = [(NAME_MARK, Piece::Name), (UNSUB_MARK, Piece::Unsubscribe)]
            .into_iter()
            .filter_map(|(m, p)| rest.find(m).map(|i| (i, m.len(), p)))
            .min_by_key(|(i, _, _)| *i);
        let Some((i, len, piece)) = next else { break };
        if i > 0 {
            pieces.push(Piece::Encoded(quoted_printable::encode(&rest[..i])));
        }
        pieces.push(piece);
        rest = &rest[i + len..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Encoded(quoted_printable::encode(rest)));
    }
    pieces
}

/// Joins encoded pieces with soft line breaks (`=` CRLF), which a decoder removes.
fn join_encoded(pieces: &[Piece], name: &str, unsubscribe: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(pieces.iter().map(|p| if let Piece::Encoded(b) = p { b.len() } else { 64 }).sum());
    let push = |out: &mut Vec<u8>, bytes: &[u8]| {
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"=\r\n");
        }
        out.extend_from_slice(bytes);
    };
    for p in pieces {
        match p {
            Piece::Encoded(b) => push(&mut out, b),
            Piece::Name => push(&mut out, &quoted_printable::encode(name)),
            Piece::Unsubscribe => push(&mut out, &quoted_printable::encode(unsubscribe)),
        }
    }
    out
}

#[derive(Serialize)]
struct StoryView {
    title: String,
    ambassador: String,
    role: String,
    photo_url: Option<String>,
    photo_alt: String,
    body_html: String,
    body_text: String,
}

#[derive(Serialize)]
struct IssueView<'a> {
    lang: &'a str,
    title: &'a str,
    subject: &'a str,
    issue_label: String,
    name: &'a str,
    unsubscribe_url: &'a str,
    archive_url: &'a str,
    from_address: &'a str,
    stories: Vec<StoryView>,
}

impl Renderer {
    pub fn new(templates: Arc<Templates>) -> Self {
        Self { templates }
    }

    /// Renders an issue for one language, markers in place of the personal parts.
    pub fn skeleton(&self, c: &IssueContent, language: Language) -> anyhow::Result<Skeleton> {
        let stories: Vec<StoryView> = c
            .stories
            .iter()
            .map(|s| StoryView {
                title: s.title.clone(),
                ambassador: s.ambassador.clone(),
                role: s.role.clone(),
                photo_url: s.photo_url.clone().filter(|u| safe_url(u)),
                photo_alt: s.photo_alt.clone().unwrap_or_else(|| match language {
                    Language::English => format!("Photo of {}", s.ambassador),
                    Language::Dutch => format!("Foto van {}", s.ambassador),
                }),
                body_html: markdown_to_html(&s.body_md),
                body_text: markdown_to_text(&s.body_md),
            })
            .collect();
        let view = IssueView {
            lang: language.code(),
            title: &c.title,
            subject: &c.subject,
            issue_label: format!("{} {}", month_name(language, c.month0), c.year),
            name: NAME_MARK,
            unsubscribe_url: UNSUB_MARK,
            archive_url: &c.archive_url,
            from_address: &c.from_address,
            stories,
        };
        let html =
            self.templates.render("newsletter/layout.html", &view).context("Failed to render the newsletter HTML")?;
        let inliner = css_inline::CSSInliner::options()
            .load_remote_stylesheets(false)
            .keep_style_tags(false)
            .keep_at_rules(true)
            .build();
        let html = inliner.inline(&html).context("Failed to inline the newsletter CSS")?;
        let text = tidy_text(
            &self.templates.render("newsletter/layout.txt", &view).context("Failed to render the newsletter text")?,
        );
        Ok(Skeleton { language, html_qp: pre_encode(&html), text_qp: pre_encode(&text), html, text })
    }
}

impl Skeleton {
    fn display_name(&self, name: Option<&str>) -> String {
        name.map(crate::domain::clean_text).filter(|n| !n.is_empty()).unwrap_or_else(|| {
            match self.language {
                Language::English => "reader",
                Language::Dutch => "lezer",
            }
            .to_string()
        })
    }

    /// One subscriber's copy as lettre bodies `(text, html)`, quoted-printable: the
    /// issue was encoded once; only the personal values are encoded here.
    pub fn personalize_encoded(&self, name: Option<&str>, unsubscribe_url: &str) -> (Body, Body) {
        let (text, html) = self.personalize_qp(name, unsubscribe_url);
        (
            Body::dangerous_pre_encoded(text, ContentTransferEncoding::QuotedPrintable),
            Body::dangerous_pre_encoded(html, ContentTransferEncoding::QuotedPrintable),
        )
    }

    /// [`Skeleton::personalize_encoded`] as the quoted-printable bytes `(text, html)`.
    pub fn personalize_qp(&self, name: Option<&str>, unsubscribe_url: &str) -> (Vec<u8>, Vec<u8>) {
        let name = self.display_name(name);
        let text = join_encoded(&self.text_qp, &name, unsubscribe_url);
        let html = join_encoded(&self.html_qp, &html_escape(&name), &html_escape(unsubscribe_url));
        (text, html)
    }

    /// One subscriber's copy: `(html, text)`. `name` is shown when known, else a
    /// friendly generic word; `unsubscribe_url` is theirs.
    pub fn personalize(&self, name: Option<&str>, unsubscribe_url: &str) -> (String, String) {
        let name = self.display_name(name);
        let html = self.html.replace(NAME_MARK, &html_escape(&name)).replace(UNSUB_MARK, &html_escape(unsubscribe_url));
        let text = self.text.replace(NAME_MARK, &name).replace(UNSUB_MARK, unsubscribe_url);
        (html, text)
    }
}

fn month_name(language: Language, month0: u32) -> &'static str {
    const NL: [&str; 12] = [
        "januari",
        "februari",
        "maart",
        "april",
        "mei",
        "juni",
        "juli",
        "augustus",
        "september",
        "oktober",
        "november",
        "december",
    ];
    const EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let i = (month0 as usize).min(11);
    match language {
        Language::Dutch => NL[i],
        Language::English => EN[i],
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Only `https:` (and `mailto:`) URLs from data go into links and images (MAIL-RULES 5).
pub fn safe_url(u: &str) -> bool {
    let u = u.trim();
    (u.starts_with("https://") || u.starts_with("mailto:")) && !u.contains(['"', '<', '>', ' ', '\n', '\r'])
}

fn shifted(level: HeadingLevel) -> HeadingLevel {
    // A story's own headings sit below its title (h2).
    match level {
        HeadingLevel::H1 => HeadingLevel::H3,
        HeadingLevel::H2 => HeadingLevel::H4,
        HeadingLevel::H3 => HeadingLevel::H5,
        _ => HeadingLevel::H6,
    }
}

/// Story Markdown to HTML that is safe to put in the newsletter: rendered by
/// pulldown-cmark without the raw HTML a story may hold (only Markdown makes markup),
/// then sanitized by ammonia (no scripts, styles, event handlers, images, relative or
/// protocol-relative links, or links other than https and mailto).
pub fn markdown_to_html(md: &str) -> String {
    let events = Parser::new_ext(md, Options::ENABLE_STRIKETHROUGH).filter_map(|e| match e {
        Event::Html(_) | Event::InlineHtml(_) => None,
        Event::Start(Tag::Heading { level, id, classes, attrs }) => {
            Some(Event::Start(Tag::Heading { level: shifted(level), id, classes, attrs }))
        }
        Event::End(TagEnd::Heading(level)) => Some(Event::End(TagEnd::Heading(shifted(level)))),
        e => Some(e),
    });
    let mut raw = String::with_capacity(md.len() * 2);
    pulldown_cmark::html::push_html(&mut raw, events);
    ammonia::Builder::default()
        .rm_tags(&["img"])
        .url_schemes(["https", "mailto"].into_iter().collect())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"))
        .clean(&raw)
        .to_string()
}

/// Story Markdown to plain text written for reading: paragraphs, "- " lists, quotes
/// with "> ", links as "text (url)", wrapped at 72 characters; no markup.
pub fn markdown_to_text(md: &str) -> String {
    let mut blocks: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prefix: Vec<&str> = Vec::new();
    let mut list_depth = 0usize;
    let mut link: Option<String> = None;
    let flush = |cur: &mut String, blocks: &mut Vec<String>, prefix: &[&str]| {
        let t = cur.trim();
        if !t.is_empty() {
            blocks.push(wrap(t, 72, &prefix.concat()));
        }
        cur.clear();
    };
    for e in Parser::new_ext(md, Options::ENABLE_STRIKETHROUGH) {
        match e {
            Event::Start(Tag::Item) => {
                flush(&mut cur, &mut blocks, &prefix);
                cur.push_str(&"  ".repeat(list_depth.saturating_sub(1)));
                cur.push_str("- ");
            }
            Event::Start(Tag::List(_)) => {
                flush(&mut cur, &mut blocks, &prefix);
                list_depth += 1;
            }
            Event::End(TagEnd::List(_)) => {
                flush(&mut cur, &mut blocks, &prefix);
                list_depth = list_depth.saturating_sub(1);
            }
            Event::Start(Tag::BlockQuote(_)) => {
                flush(&mut cur, &mut blocks, &prefix);
                prefix.push("> ");
            }
            Event::End(TagEnd::BlockQuote(_)) => {
                flush(&mut cur, &mut blocks, &prefix);
                prefix.pop();
            }
            Event::Start(Tag::Link { dest_url, .. }) => link = Some(dest_url.to_string()),
            Event::End(TagEnd::Link) => {
                if let Some(url) = link.take().filter(|u| safe_url(u) && !cur.ends_with(u.as_str())) {
                    cur.push_str(&format!(" ({})", url.trim_start_matches("mailto:")));
                }
            }
            Event::End(TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::Item | TagEnd::CodeBlock) => {
                flush(&mut cur, &mut blocks, &prefix)
            }
            Event::Text(t) | Event::Code(t) => cur.push_str(&t),
            // Raw HTML in a story: keep only its text.
            Event::Html(h) | Event::InlineHtml(h) => cur.push_str(&strip_tags(&h)),
            Event::SoftBreak => cur.push(' '),
            Event::HardBreak => cur.push('\n'),
            Event::Rule => {
                flush(&mut cur, &mut blocks, &prefix);
                blocks.push("* * *".into());
            }
            _ => {}
        }
    }
    flush(&mut cur, &mut blocks, &prefix);
    // List items follow each other without blank lines.
    let mut out = String::new();
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            let tight = b.trim_start().starts_with("- ") && blocks[i - 1].trim_start().starts_with("- ");
            out.push_str(if tight { "\n" } else { "\n\n" });
        }
        out.push_str(b);
    }
    out
}

fn strip_tags(h: &str) -> String {
    let cleaned = ammonia::Builder::empty().clean(h).to_string();
    // ammonia keeps text but escapes it; undo the escaping for plain text.
    cleaned
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn wrap(text: &str, width: usize, prefix: &str) -> String {
    let mut out = Vec::new();
    for hard in text.split('\n') {
        let indent: String = hard.chars().take_while(|c| *c == ' ').collect();
        let mut line = String::new();
        for word in hard.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                out.push(format!("{prefix}{line}"));
                line = format!("{indent}  ");
            } else if !line.is_empty() && !line.ends_with(' ') {
                line.push(' ');
            } else if line.is_empty() {
                line.push_str(&indent);
            }
            line.push_str(word);
        }
        out.push(format!("{prefix}{line}"));
    }
    out.join("\n")
}

/// At most one blank line in a row, no trailing spaces.
fn tidy_text(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut blank = 0;
    for line in t.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_start_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn story(body: &str) -> Story {
        Story {
            id: crate::domain::ids::StoryId(1),
            title: "Ga naast de ouders staan".into(),
            ambassador: "Fatima <b>".into(),
            role: "leerkracht".into(),
            body_md: body.into(),
            photo_url: Some("https://example.org/f.jpg".into()),
            photo_alt: None,
            status: crate::domain::state::StoryStatus::Approved,
            source: "x".into(),
            consent_at: None,
            consent_source: None,
            created_at: chrono::Utc::now(),
            approved_at: None,
            approved_by: None,
            rejected_at: None,
            rejected_by: None,
            published_at: None,
            issue_id: None,
        }
    }

    fn content(body: &str) -> IssueContent {
        IssueContent {
            title: "Nieuwsbrief".into(),
            subject: "Nieuwsbrief december".into(),
            month0: 11,
            year: 2026,
            stories: vec![story(body)],
            archive_url: "https://n.example.org/archive/1".into(),
            from_address: "contact@example.org".into(),
        }
    }

    #[test]
    fn scripts_and_raw_html_in_a_story_are_removed() {
        let html = markdown_to_html(
            "Hallo <script>alert(1)</script> <b onclick=\"x()\">vet</b> [klik](javascript:alert(1)) [ok](https://a.nl)\n\n<iframe src=\"https://evil\"></iframe><img src=\"https://t.example/pixel.gif\">",
        );
        assert!(!html.contains("<script") && !html.contains("alert(1)</script>"), "{html}");
        assert!(!html.contains("onclick") && !html.contains("javascript:") && !html.contains("<iframe"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "raw HTML makes no markup: {html}");
        assert!(html.contains("vet") && html.contains("href=\"https://a.nl\""), "{html}");
    }

    #[test]
    fn no_raw_html_and_no_protocol_relative_or_script_links_in_a_story() {
        let cases: &[(&str, &[&str])] = &[
            ("Voor <script>alert(1)</script> na", &["<script", "</script"]),
            ("<script>\nalert(1)\n</script>\n\nTekst", &["<script", "alert(1)"]),
            ("Een plaatje <img src=//evil.example/p.gif> hier", &["<img", "evil"]),
            ("<img src=//evil.example/p.gif>\n\nTekst", &["<img", "evil"]),
            ("Zie [x](//evil.example/a) hier", &["evil", "href"]),
            ("Zie [x](/relatief) en [y](relatief.html)", &["href"]),
            ("Zie [x](javascript:alert(1)) hier", &["javascript", "href"]),
            ("Zie [x](JavaScript:alert(1)) hier", &["avascript", "href"]),
            ("Zie [x](data:text/html;base64,PHNjcmlwdD4=) hier", &["data:", "href"]),
            ("![foto](//evil.example/p.gif)", &["<img", "evil"]),
            ("<a href=\"//evil.example\">klik</a>", &["evil", "href"]),
            ("<div style=\"position:fixed\">x</div>", &["<div", "style"]),
        ];
        for (md, absent) in cases {
            let html = markdown_to_html(md);
            for a in *absent {
                assert!(!html.to_lowercase().contains(&a.to_lowercase()), "{md:?} gave {html:?} (holds {a:?})");
            }
        }
        // Markdown itself still makes markup, and https and mailto links stay.
        let html = markdown_to_html("**vet** [site](https://a.nl) [mail](mailto:info@a.nl)");
        assert!(html.contains("<strong>vet</strong>"), "{html}");
        assert!(html.contains("href=\"https://a.nl\"") && html.contains("href=\"mailto:info@a.nl\""), "{html}");
    }

    #[test]
    fn the_pre_encoded_copy_decodes_to_the_personalized_one() {
        let r = Renderer::new(Arc::new(Templates::load(None).unwrap()));
        let long = "Een heel lange zin met één accent en nog veel meer woorden erachter. ".repeat(20);
        for lang in [Language::Dutch, Language::English] {
            let s = r.skeleton(&content(&long), lang).unwrap();
            for name in [Some("Zoë <&> \"x\""), None] {
                let url = "https://n.example.org/unsubscribe/AbC-_123";
                let (html, text) = s.personalize(name, url);
                let (t, h) = s.personalize_encoded(name, url);
                for (body, want) in [(t, text), (h, html)] {
                    let raw: &[u8] = body.as_ref();
                    assert!(raw.is_ascii() && raw.split(|b| *b == b'\n').all(|l| l.len() <= 78), "QP lines");
                    let decoded = quoted_printable::decode(raw, quoted_printable::ParseMode::Strict).unwrap();
                    assert_eq!(String::from_utf8(decoded).unwrap().replace("\r\n", "\n"), want.replace("\r\n", "\n"));
                }
            }
        }
    }

    #[test]
    fn markdown_becomes_readable_text() {
        let t = markdown_to_text(
            "# Kop\n\nEen *eerste* alinea met een [link](https://a.nl).\n\n- een\n- twee\n\n> citaat\n\n<div>ruw</div>",
        );
        assert_eq!(t, "Kop\n\nEen eerste alinea met een link (https://a.nl).\n\n- een\n- twee\n\n> citaat\n\nruw");
        let long = markdown_to_text(&"woord ".repeat(40));
        assert!(long.lines().all(|l| l.chars().count() <= 72), "{long}");
    }

    #[test]
    fn an_issue_renders_accessible_html_and_text_in_both_languages() {
        let r = Renderer::new(Arc::new(Templates::load(None).unwrap()));
        for lang in [Language::Dutch, Language::English] {
            let s = r.skeleton(&content("Werk **mensgericht** en vanuit je hart."), lang).unwrap();
            let (html, text) = s.personalize(Some("Ann <x>\r\nBcc: y"), "https://n.example.org/unsubscribe/T0K");
            assert!(html.contains(&format!("<html lang=\"{}\"", lang.code())), "{html}");
            let month = if lang == Language::Dutch { "december 2026" } else { "December 2026" };
            assert!(text.contains(month), "{text}");
            assert!(html.contains("<h1") && html.contains("<h2"), "real headings");
            assert!(html.contains("alt=\"") && html.contains("Fatima &lt;b&gt;"), "alt text and escaping");
            assert!(html.contains("style=\""), "CSS is inlined");
            assert!(html.contains("prefers-color-scheme: dark"), "dark mode kept");
            assert!(html.contains("<strong>mensgericht</strong>"));
            assert!(html.contains("Ann &lt;x&gt; Bcc: y"), "{html}");
            assert!(html.contains("href=\"https://n.example.org/unsubscribe/T0K\""));
            assert!(!text.contains('<') || text.contains("Fatima <b>"), "{text}");
            assert!(text.contains("Werk mensgericht en vanuit je hart."), "{text}");
            assert!(text.contains("https://n.example.org/unsubscribe/T0K"));
            assert!(!text.contains(NAME_MARK) && !html.contains(UNSUB_MARK));
        }
        let s = r.skeleton(&content("x"), Language::Dutch).unwrap();
        assert!(s.personalize(None, "u").1.contains("Beste lezer,"));
    }
}
