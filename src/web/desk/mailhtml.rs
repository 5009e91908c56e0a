//! A sender's HTML as the desk may show it: sanitized by ammonia down to text markup
//! (paragraphs, emphasis, lists, quotes, tables, links). No script, style, form, frame,
//! image, event handler or attribute but a link's address (and a table cell's span, a
//! list's start, as digits) survives, so nothing in a mail runs, loads anything (a
//! tracking image tells the sender nothing) or changes how the desk looks; the desk's
//! Content-Security-Policy (`default-src 'none'`) would stop what slipped through anyway.
//! Links keep only `https`, `http` and `mailto` addresses and get
//! `rel="noopener noreferrer nofollow"`; a link left without text (it held an image) is
//! dropped, so that every link on the page says where it goes (and the page shows each
//! link's address beside it, `desk.css`).
//!
//! HTML nested deeper than [`MAX_DEPTH`] is not shown at all: no person writes it, and
//! parsing it costs time that grows with the square of the depth (52,000 nested `div`s,
//! 254 KiB, took html5ever 9.5 s), which a stranger could make every page view pay.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::domain::redact::contains_ignoring_case;

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

/// Nesting deeper than this (by a count of start and end tags) is shown as text only.
pub const MAX_DEPTH: usize = 200;
/// Elements without content, and elements whose end tag may be left out (a parser
/// closes them itself): they do not count towards the depth.
const NOT_NESTING: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr", "p",
    "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option", "optgroup", "colgroup", "rt", "rp",
];

/// A mail's HTML, ready for the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailHtml {
    /// Sanitized markup, safe to put in the page as it is; `None` when nothing is left
    /// to show (or the HTML nests too deep to show).
    pub html: Option<String>,
    /// The mail holds images, which are not shown.
    pub had_images: bool,
    /// The HTML nested deeper than [`MAX_DEPTH`]: not shown.
    pub too_deep: bool,
}

/// Sanitizes a sender's HTML for the desk (see the module comment).
pub fn sanitize(raw: &str) -> MailHtml {
    let had_images = ["<img", "<image"].iter().any(|tag| contains_ignoring_case(raw, tag));
    if nesting_depth(raw) > MAX_DEPTH {
        return MailHtml { html: None, had_images, too_deep: true };
    }
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
        // A span or a start is a small number, nothing else.
        .attribute_filter(|_, attr, value| match attr {
            "colspan" | "rowspan" | "start" => {
                (!value.is_empty() && value.len() <= 4 && value.bytes().all(|b| b.is_ascii_digit()))
                    .then_some(value.into())
            }
            _ => Some(value.into()),
        })
        .url_schemes(["https", "http", "mailto"].into_iter().collect())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer nofollow"))
        .strip_comments(true)
        .clean(raw)
        .to_string();
    let html = drop_empty_links(&cleaned);
    let html = (!no_text(&html)).then_some(html);
    MailHtml { html, had_images, too_deep: false }
}

/// The deepest nesting of elements, counted from start and end tags (elements that do
/// not nest, see [`NOT_NESTING`], left out); stops counting past [`MAX_DEPTH`]. An
/// estimate for refusing what is far too deep, not a parser.
fn nesting_depth(raw: &str) -> usize {
    let bytes = raw.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while let Some(at) = raw[i..].find('<') {
        let start = i + at + 1;
        let closing = bytes.get(start) == Some(&b'/');
        let name_at = start + usize::from(closing);
        let name_len = bytes[name_at..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        i = name_at + name_len;
        if name_len == 0 || !bytes[name_at].is_ascii_alphabetic() {
            continue;
        }
        let name = raw[name_at..i].to_ascii_lowercase();
        if NOT_NESTING.contains(&name.as_str()) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
        } else {
            depth += 1;
            deepest = deepest.max(depth);
            if deepest > MAX_DEPTH {
                break;
            }
        }
    }
    deepest
}

/// One piece of ammonia's output: a tag (`<...>`, whole) or the text up to the next tag.
/// ammonia's serializer (html5ever) writes `<` in text as `&lt;` and quotes every
/// attribute value with `"`, writing a `"` in a value as `&quot;`: outside a tag, `<`
/// starts one; inside, a `>` outside quotes ends it.
fn pieces(html: &str) -> impl Iterator<Item = &str> {
    let mut rest = html;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = if rest.starts_with('<') {
            let mut quoted = false;
            rest.char_indices()
                .find(|&(_, c)| {
                    if c == '"' {
                        quoted = !quoted;
                    }
                    c == '>' && !quoted
                })
                .map_or(rest.len(), |(i, _)| i + 1)
        } else {
            rest.find('<').unwrap_or(rest.len())
        };
        let (piece, after) = rest.split_at(end);
        rest = after;
        Some(piece)
    })
}

/// Whether markup holds no text a person can read (only tags, white space, `&nbsp;`).
fn no_text(html: &str) -> bool {
    pieces(html).filter(|p| !p.starts_with('<')).all(|t| t.replace("&nbsp;", " ").trim().is_empty())
}

/// Removes `<a ...>...</a>` elements without readable text from ammonia's output, read
/// piece by piece (see [`pieces`]). Links do not nest in parsed HTML, so a link ends at
/// the next `</a>`; a removed link is whole tags and what lies between them, so the rest
/// reads as before.
fn drop_empty_links(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    // The link being read: its start tag's length and everything so far.
    let mut link: Option<(usize, String)> = None;
    for piece in pieces(html) {
        let is_start = piece.starts_with("<a ") || piece == "<a>";
        match link.as_mut() {
            None if is_start => link = Some((piece.len(), piece.to_string())),
            None => out.push_str(piece),
            Some((_, held)) => {
                held.push_str(piece);
                if piece == "</a>" {
                    let (start, whole) = link.take().unwrap_or_default();
                    if !no_text(&whole[start..whole.len() - piece.len()]) {
                        out.push_str(&whole);
                    }
                }
            }
        }
    }
    // A link never closed (not from ammonia) stays as it came.
    out.push_str(&link.map(|(_, held)| held).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(raw: &str) -> String {
        sanitize(raw).html.unwrap_or_default()
    }

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
            <!-- commentaar --><h1>Kop</h1><table><tr><td colspan="2" width="600">cel</td>
            <td colspan="2 onmouseover=alert(8)" rowspan="x">cel2</td></tr></table><ol start="3"><li>drie</li></ol>
            </body></html>"#;
        let m = sanitize(raw);
        let h = m.html.unwrap();
        for bad in [
            "<script",
            "alert",
            "onload",
            "onclick",
            "onerror",
            "onmouseover",
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
            "rowspan",
        ] {
            assert!(!h.to_ascii_lowercase().contains(&bad.to_ascii_lowercase()), "{bad} survived in {h}");
        }
        for good in [
            "<p>Hallo <b>daar</b></p>",
            r#"<a href="https://example.org/info" rel="noopener noreferrer nofollow">info</a>"#,
            r#"href="mailto:ann@example.nl""#,
            "Kop",
            r#"<td colspan="2">cel</td>"#,
            "<td>cel2</td>",
            r#"<ol start="3">"#,
            "klik",
        ] {
            assert!(h.contains(good), "{good} is missing in {h}");
        }
        assert!(m.had_images && !m.too_deep);
    }

    #[test]
    fn a_link_without_text_is_dropped_and_others_stay() {
        let m = sanitize(
            r#"<p><a href="https://example.org/a"><img src="x.png"></a> tekst <a href="https://example.org/b">b</a>
               <a href="https://example.org/c"><span><img src="y.png"></span></a><a href="https://example.org/d">&nbsp;</a>
               <a href="https://example.org/e"><br></a></p>"#,
        );
        assert_eq!(
            m.html.as_deref(),
            Some(
                "<p> tekst <a href=\"https://example.org/b\" rel=\"noopener noreferrer nofollow\">b</a>\n               \n               </p>"
            ),
        );
        assert!(m.had_images);
        assert_eq!(
            sanitize("<p><a href=\"https://x.example/\"><img src=\"a.png\"></a></p>").html,
            None,
            "nothing to read"
        );
    }

    #[test]
    fn dropping_empty_links_keeps_everything_else_as_it_was() {
        for s in ["", "<abbr>x</abbr>", "<a href=\"a>b\">t</a>", "a &lt; b", "<a href=\"x\">", "<p>x</p><a"] {
            assert_eq!(drop_empty_links(s), s);
        }
        assert_eq!(drop_empty_links("x<a href=\"a>b\"> \n</a>y<a>z</a>"), "xy<a>z</a>");
        // What an older serializer might write: `<`, `>` and `'` unescaped inside quoted
        // values. Only the empty link goes; nothing inside a value becomes markup.
        let odd = concat!(
            "<ol start=\"<a x'\">'<a href=\"h\"><img></a>",
            "<a href=\"https://e.example/x><form action=/desk/x method=post><button>B</button></form>\">t</a></ol>"
        );
        assert_eq!(drop_empty_links(odd), odd.replace("<a href=\"h\"><img></a>", ""));
    }

    #[test]
    fn html_nested_too_deep_is_not_shown() {
        let deep = format!("{}x{}", "<div>".repeat(52_000), "</div>".repeat(52_000));
        let m = sanitize(&deep);
        assert!(m.too_deep && m.html.is_none());
        let ok = format!("{}x{}", "<div>".repeat(MAX_DEPTH), "</div>".repeat(MAX_DEPTH));
        assert!(!sanitize(&ok).too_deep);
        // Paragraphs and list items without end tags do not nest.
        let long = "<p>Alinea".repeat(5_000) + &"<ul><li>punt".repeat(10) + &"</ul>".repeat(10);
        let m = sanitize(&long);
        assert!(!m.too_deep && m.html.is_some_and(|h| h.contains("Alinea")));
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
            let once = shown(&raw);
            assert_eq!(shown(&once), once, "sanitizing {} again changes it", f.display());
            let h = once.to_ascii_lowercase();
            for bad in
                ["<script", "<style", "<img", "<iframe", "<form", "<object", "<embed", "<link", "<meta", "javascript:"]
            {
                assert!(!h.contains(bad), "{bad} in the sanitized HTML of {}", f.display());
            }
            for piece in pieces(&once).filter(|p| p.starts_with('<')) {
                assert!(!piece.contains(" on"), "an event handler in {piece} of {}", f.display());
            }
            assert_eq!(drop_empty_links(&once), once, "a link without text is left in {}", f.display());
        }
        assert!(
            with_html >= 20 && with_attachments >= 20,
            "the corpus has HTML ({with_html}) and attachments ({with_attachments})"
        );
    }
}
