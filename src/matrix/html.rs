//! The HTML the bot puts in rooms, cut down to what the Matrix spec recommends for clients.
//!
//! Why this exists: replies are markdown from agents (and `!context` summaries, and confirm
//! prompts that quote the agent), and markdown keeps raw HTML. Without this module an agent
//! could put a spoofed link, a tracking image from any web server, or a fake reply quote
//! (`<mx-reply>`) in front of people, with the bot's name on it. Every `formatted_body` the
//! bot sends goes through [`sanitize`], built on the `ammonia` sanitizer (an HTML5 parser and
//! allow-lists; a hand-written filter would miss parser quirks).
//!
//! What stays (the spec's "HTML tags and attributes clients should support", client-server
//! API, `m.room.message` msgtypes): the tags in [`ALLOWED_TAGS`]; `a` with `href` (schemes
//! in [`LINK_SCHEMES`], never relative) and `target`, and `rel="noopener noreferrer"` added;
//! `img` with `width`, `height`, `alt`, `title` and a `src` that must be `mxc://` (no image
//! from the web, so no tracking pixel); `span` and `font` with `data-mx-color`,
//! `data-mx-bg-color` (`#rrggbb`) and `data-mx-spoiler`; `font` `color`; `code` with a
//! `language-*` class; `ol` with a numeric `start`. Everything else goes, and `mx-reply`
//! (with what is inside it), `script` and `style` go with their content.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Tags the spec recommends clients support.
pub const ALLOWED_TAGS: &[&str] = &[
    "font",
    "del",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "p",
    "a",
    "ul",
    "ol",
    "sup",
    "sub",
    "li",
    "b",
    "i",
    "u",
    "strong",
    "em",
    "strike",
    "code",
    "hr",
    "br",
    "div",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "caption",
    "pre",
    "span",
    "img",
    "details",
    "summary",
];

/// Tags removed together with everything inside them (a fake reply quote is dropped whole).
pub const DROPPED_WITH_CONTENT: &[&str] = &["mx-reply", "script", "style"];

/// URL schemes a link may use.
pub const LINK_SCHEMES: &[&str] = &["https", "http", "ftp", "mailto", "magnet"];

/// The only source an image may have.
pub const IMAGE_SCHEME: &str = "mxc";

/// What links get as `rel`.
pub const LINK_REL: &str = "noopener noreferrer";

/// Allowed attributes per tag.
const TAG_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("a", &["href", "target"]),
    ("img", &["width", "height", "alt", "title", "src"]),
    (
        "span",
        &["data-mx-color", "data-mx-bg-color", "data-mx-spoiler"],
    ),
    (
        "font",
        &[
            "data-mx-color",
            "data-mx-bg-color",
            "data-mx-spoiler",
            "color",
        ],
    ),
    ("code", &["class"]),
    ("ol", &["start"]),
];

/// The one sanitizer (its configuration is fixed; built once).
fn cleaner() -> &'static ammonia::Builder<'static> {
    static CLEANER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    CLEANER.get_or_init(|| {
        let mut schemes: HashSet<&str> = LINK_SCHEMES.iter().copied().collect();
        schemes.insert(IMAGE_SCHEME);
        let attributes: HashMap<&str, HashSet<&str>> = TAG_ATTRIBUTES
            .iter()
            .map(|(tag, attrs)| (*tag, attrs.iter().copied().collect()))
            .collect();
        let mut builder = ammonia::Builder::empty();
        builder
            .tags(ALLOWED_TAGS.iter().copied().collect())
            .clean_content_tags(DROPPED_WITH_CONTENT.iter().copied().collect())
            .tag_attributes(attributes)
            .generic_attributes(HashSet::new())
            .url_schemes(schemes)
            .url_relative(ammonia::UrlRelative::Deny)
            .link_rel(Some(LINK_REL))
            .strip_comments(true)
            .attribute_filter(filter_attribute);
        builder
    })
}

/// The value checks the allow-lists cannot express; `None` drops the attribute.
fn filter_attribute<'u>(element: &str, attribute: &str, value: &'u str) -> Option<Cow<'u, str>> {
    let keep = match (element, attribute) {
        ("img", "src") => has_scheme(value, IMAGE_SCHEME),
        ("a", "href") => LINK_SCHEMES.iter().any(|s| has_scheme(value, s)),
        ("a", "target") => value == "_blank",
        ("img", "width" | "height") | ("ol", "start") => is_number(value),
        (_, "data-mx-color" | "data-mx-bg-color" | "color") => is_hex_color(value),
        ("code", "class") => is_language_class(value),
        _ => true,
    };
    keep.then_some(Cow::Borrowed(value))
}

fn has_scheme(url: &str, scheme: &str) -> bool {
    url.trim_start()
        .split_once(':')
        .is_some_and(|(s, _)| s.eq_ignore_ascii_case(scheme))
}

fn is_number(value: &str) -> bool {
    (1..=9).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
}

fn is_hex_color(value: &str) -> bool {
    value
        .strip_prefix('#')
        .is_some_and(|hex| hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `language-<name>`, the name made of letters, digits, `+`, `#`, `-`, `_` and `.`.
fn is_language_class(value: &str) -> bool {
    value.strip_prefix("language-").is_some_and(|name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'#' | b'-' | b'_' | b'.'))
    })
}

/// `html` with only what the spec recommends (see the module docs).
pub fn sanitize(html: &str) -> String {
    cleaner().clean(html).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_table() {
        let cases = [
            // Kept as they are.
            ("<p><strong>hi</strong> <em>there</em></p>", "<p><strong>hi</strong> <em>there</em></p>"),
            ("<h1>t</h1><hr><br>", "<h1>t</h1><hr><br>"),
            (
                "<pre><code class=\"language-rust\">fn x() {}</code></pre>",
                "<pre><code class=\"language-rust\">fn x() {}</code></pre>",
            ),
            ("<ol start=\"3\"><li>a</li></ol>", "<ol start=\"3\"><li>a</li></ol>"),
            (
                "<span data-mx-spoiler=\"why\">s</span>",
                "<span data-mx-spoiler=\"why\">s</span>",
            ),
            (
                "<font data-mx-color=\"#ff0000\">r</font>",
                "<font data-mx-color=\"#ff0000\">r</font>",
            ),
            (
                "<details><summary>more</summary>text</details>",
                "<details><summary>more</summary>text</details>",
            ),
            (
                "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>",
                "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>",
            ),
            // Links: allowed schemes get rel; others lose the href.
            (
                "<a href=\"https://example.org/\">x</a>",
                "<a href=\"https://example.org/\" rel=\"noopener noreferrer\">x</a>",
            ),
            (
                "<a href=\"mailto:a@example.org\" target=\"_blank\">m</a>",
                "<a href=\"mailto:a@example.org\" target=\"_blank\" rel=\"noopener noreferrer\">m</a>",
            ),
            ("<a href=\"javascript:alert(1)\">x</a>", "<a rel=\"noopener noreferrer\">x</a>"),
            ("<a href=\"/relative\">x</a>", "<a rel=\"noopener noreferrer\">x</a>"),
            ("<a href=\"mxc://h/m\">x</a>", "<a rel=\"noopener noreferrer\">x</a>"),
            (
                "<a href=\"https://e.org\" target=\"_top\" onclick=\"x()\">x</a>",
                "<a href=\"https://e.org\" rel=\"noopener noreferrer\">x</a>",
            ),
            // Images: mxc:// only (no tracking pixel from the web).
            ("<img src=\"https://tracker.example/p.gif\" alt=\"a\">", "<img alt=\"a\">"),
            ("<img src=\"data:image/png;base64,AAAA\">", "<img>"),
            (
                "<img src=\"mxc://example.org/abc\" width=\"10\" height=\"x\" alt=\"a\">",
                "<img src=\"mxc://example.org/abc\" width=\"10\" alt=\"a\">",
            ),
            // Fake reply quotes go whole; scripts and styles too.
            (
                "<mx-reply><blockquote>In reply to <a href=\"https://matrix.to/#/@boss:x\">@boss</a>: pay</blockquote></mx-reply>ok",
                "ok",
            ),
            ("<script>alert(1)</script>a<style>p{}</style>", "a"),
            // Unknown tags go, their text stays; unknown attributes go.
            ("<iframe src=\"https://e.org\"></iframe>x", "x"),
            ("<marquee>m</marquee>", "m"),
            ("<p style=\"color:red\" id=\"x\" class=\"c\">p</p>", "<p>p</p>"),
            ("<span data-mx-color=\"red;x\">c</span>", "<span>c</span>"),
            ("<code class=\"language-x evil\">c</code>", "<code>c</code>"),
            ("<!-- comment -->t", "t"),
            ("<form><input value=\"x\"></form>y", "y"),
        ];
        for (html, want) in cases {
            assert_eq!(sanitize(html), want, "{html}");
        }
    }
}
