//! A sender's HTML as the desk may show it: sanitized by ammonia down to text markup
//! (paragraphs, emphasis, lists, quotes, tables, links). No script, style, form, frame,
//! image, event handler or attribute but a link's address survives, so nothing in a mail
//! runs, loads anything (a tracking image tells the sender nothing) or changes how the
//! desk looks; the desk's Content-Security-Policy (`default-src 'none'`) would stop what
//! slipped through anyway. Links keep only `https`, `http` and `mailto` addresses and get
//! `rel="noopener noreferrer nofollow"`; a link left without text (it held an image) is
//! dropped, so that every link on the page says where it goes.

use std::collections::{HashMap, HashSet};

/// The markup a mail keeps.
const TAGS: &[&str] = &[
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "dd",
    "del",
    "div",
    "dl",
    "dt",
    "em",
    "hr",
    "i",
    "ins",
    "li",
    "ol",
    "p",
    "pre",
    "q",
    "s",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
];
/// Elements removed with everything in them (the rest keep their text).
const DROPPED_WITH_CONTENT: &[&str] = &["script", "style", "title", "template", "noscript", "head"];

/// A mail's HTML, ready for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailHtml {
    /// Sanitized markup, safe to put in the page as it is.
    pub html: String,
    /// The mail holds images, which are not shown.
    pub had_images: bool,
}

/// Sanitizes a sender's HTML for the desk (see the module comment).
pub fn sanitize(raw: &str) -> MailHtml {
    let tag_attributes: HashMap<&str, HashSet<&str>> = [
        ("a", ["href"].into_iter().collect()),
        ("td", ["colspan", "rowspan"].into_iter().collect()),
        ("th", ["colspan", "rowspan"].into_iter().collect()),
        ("ol", ["start"].into_iter().collect()),
    ]
    .into_iter()
    .collect();
    let cleaned = ammonia::Builder::default()
        .tags(TAGS.iter().copied().collect())
        .clean_content_tags(DROPPED_WITH_CONTENT.iter().copied().collect())
        .tag_attributes(tag_attributes)
        .generic_attributes(HashSet::new())
        .url_schemes(["https", "http", "mailto"].into_iter().collect())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer nofollow"))
        .strip_comments(true)
        .clean(raw)
        .to_string();
    let lower = raw.to_ascii_lowercase();
    MailHtml { html: drop_empty_links(&cleaned), had_images: lower.contains("<img") || lower.contains("<image") }
}

/// Removes `<a ...>` elements with nothing but white space in them, from ammonia's
/// output (well formed: tags balanced, `<` in text escaped). Only removes, so it cannot
/// make markup.
fn drop_empty_links(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("<a") {
        let after = &rest[start + 2..];
        let is_anchor = after.starts_with([' ', '>']);
        match (is_anchor, tag_end(after)) {
            (true, Some(open_end)) => {
                let inner = &after[open_end..];
                match inner.find("</a>") {
                    Some(close) if inner[..close].trim().is_empty() => {
                        out.push_str(&rest[..start]);
                        rest = &inner[close + 4..];
                    }
                    _ => {
                        out.push_str(&rest[..start + 2]);
                        rest = after;
                    }
                }
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The index just past the `>` that ends a start tag (quotes respected).
fn tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_that_runs_loads_or_styles_survives() {
        let raw = r#"<html><head><title>Titel</title><style>body{display:none}</style>
            <script>alert(1)</script></head><body onload="alert(2)">
            <p style="color:red" class="x" id="y" onclick="alert(3)">Hallo <b>daar</b></p>
            <img src="https://tracker.example/p.gif" onerror="alert(4)">
            <iframe src="https://evil.example/"></iframe><form action="https://evil.example/"><input name="q"></form>
            <svg><script>alert(5)</script></svg><math><mi xlink:href="javascript:alert(6)">x</mi></math>
            <a href="javascript:alert(7)">klik</a> <a href="https://example.org/info">info</a>
            <a href="/relatief">relatief</a> <a href="mailto:ann@example.nl">mail</a>
            <!-- commentaar --><h1>Kop</h1><table><tr><td colspan="2" width="600">cel</td></tr></table>
            </body></html>"#;
        let m = sanitize(raw);
        let h = &m.html;
        for bad in [
            "<script",
            "alert",
            "onload",
            "onclick",
            "onerror",
            "style",
            "class=",
            "id=",
            "<img",
            "tracker",
            "<iframe",
            "<form",
            "<input",
            "<svg",
            "<math",
            "javascript:",
            "href=\"/relatief\"",
            "commentaar",
            "Titel",
            "<h1",
            "width=",
        ] {
            assert!(!h.to_ascii_lowercase().contains(&bad.to_ascii_lowercase()), "{bad} survived in {h}");
        }
        for good in [
            "<p>Hallo <b>daar</b></p>",
            r#"<a href="https://example.org/info" rel="noopener noreferrer nofollow">info</a>"#,
            r#"href="mailto:ann@example.nl""#,
            "Kop",
            r#"<td colspan="2">cel</td>"#,
            "klik",
        ] {
            assert!(h.contains(good), "{good} is missing in {h}");
        }
        assert!(m.had_images);
    }

    #[test]
    fn a_link_around_an_image_only_is_dropped_and_others_stay() {
        let m = sanitize(
            r#"<p><a href="https://example.org/a"><img src="x.png"></a> tekst <a href="https://example.org/b">b</a></p>"#,
        );
        assert_eq!(
            m.html, r#"<p> tekst <a href="https://example.org/b" rel="noopener noreferrer nofollow">b</a></p>"#,
            "{}",
            m.html
        );
        assert!(m.had_images);
    }

    /// The .eml files below `dir`.
    fn eml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(eml_files(&p));
            } else if p.extension().is_some_and(|x| x == "eml") {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn the_html_of_every_corpus_mail_sanitizes_to_markup_that_runs_and_loads_nothing() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
        let (mut with_html, mut with_attachments) = (0, 0);
        for f in eml_files(&dir) {
            let Some(m) = crate::inbox::parse::parse(&std::fs::read(&f).unwrap()) else { continue };
            with_attachments += usize::from(!m.attachments.is_empty());
            let Some(raw) = m.html else { continue };
            with_html += 1;
            let h = sanitize(&raw).html.to_ascii_lowercase();
            for bad in
                ["<script", "<style", "<img", "<iframe", "<form", "<object", "<embed", "<link", "<meta", "javascript:"]
            {
                assert!(!h.contains(bad), "{bad} in the sanitized HTML of {}", f.display());
            }
            assert!(
                !h.split('<').skip(1).any(|tag| tag.split('>').next().unwrap_or("").contains(" on")),
                "an event handler in the sanitized HTML of {}",
                f.display()
            );
        }
        assert!(
            with_html >= 20 && with_attachments >= 20,
            "the corpus has HTML ({with_html}) and attachments ({with_attachments})"
        );
    }

    #[test]
    fn dropping_empty_links_keeps_everything_else_as_it_was() {
        for s in ["", "<abbr>x</abbr>", "<a href=\"a>b\">t</a>", "a < b", "<a href=\"x\">", "<p>x</p><a"] {
            assert_eq!(drop_empty_links(s), s);
        }
        assert_eq!(drop_empty_links("x<a href=\"a>b\"> \n</a>y<a>z</a>"), "xy<a>z</a>");
        assert!(!sanitize("<p>gewoon</p>").had_images);
    }
}
