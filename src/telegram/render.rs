//! The core's light markdown as Telegram's HTML parse mode.
//!
//! Why this exists: Telegram renders only a small set of tags (`b`, `i`, `u`, `s`, `code`,
//! `pre`, `a`, `blockquote`, `tg-spoiler`) and refuses the whole message when its HTML does
//! not parse. Replies are markdown written by agents, and markdown keeps raw HTML: so every
//! piece of text is escaped here, raw HTML is shown as text (never passed through), links
//! keep only the schemes in [`LINK_SCHEMES`], and structure Telegram lacks (headings, lists,
//! rules, tables) becomes plain text with bold and bullets. Pure, table-tested.
//!
//! Length: Telegram's 4,096-character limit counts the text after the tags are parsed, so a
//! markdown part the core split within that many bytes always fits.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

// Telegram's HTML takes the same entities as the status page's (named and numeric).
use crate::ops::html::escape;

/// Link schemes kept; any other link shows its text only.
pub const LINK_SCHEMES: &[&str] = &["https", "http", "mailto", "tg"];

/// The longest text Telegram accepts in one message, in characters after parsing.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// Renders `markdown` as Telegram HTML.
pub fn html(markdown: &str) -> String {
    let mut out = Renderer::default();
    let options =
        Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS;
    for event in Parser::new_ext(markdown, options) {
        out.event(event);
    }
    out.finish()
}

/// Whether a link target may be kept.
fn link_allowed(url: &str) -> bool {
    url.split_once(':').is_some_and(|(scheme, _)| {
        LINK_SCHEMES
            .iter()
            .any(|allowed| scheme.eq_ignore_ascii_case(allowed))
    })
}

#[derive(Default)]
struct Renderer {
    out: String,
    /// Open lists: the next number of each ordered one (`None`: bullets).
    lists: Vec<Option<u64>>,
    /// Whether each open link was kept (so its end closes an `a` or nothing).
    links: Vec<bool>,
    /// Inside a code block (text is not touched but escaped).
    in_code_block: bool,
    /// The open code block has a `<code class=…>` inside its `<pre>`.
    code_has_language: bool,
}

impl Renderer {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => self.out.push_str(&escape(&text)),
            Event::Code(code) => {
                self.out.push_str("<code>");
                self.out.push_str(&escape(&code));
                self.out.push_str("</code>");
            }
            Event::InlineMath(math) | Event::DisplayMath(math) => {
                self.out.push_str(&escape(&math));
            }
            // Raw HTML from an agent is shown as what it is, never rendered.
            Event::Html(html) | Event::InlineHtml(html) => self.out.push_str(&escape(&html)),
            Event::FootnoteReference(label) => {
                self.out.push_str(&escape(&format!("[{label}]")));
            }
            Event::SoftBreak | Event::HardBreak => self.out.push('\n'),
            Event::Rule => {
                self.block_gap();
                self.out.push_str("——————");
            }
            Event::TaskListMarker(done) => self.out.push_str(if done { "☑ " } else { "☐ " }),
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph | Tag::Table(_) => self.block_gap(),
            Tag::Heading { .. } => {
                self.block_gap();
                self.out.push_str("<b>");
            }
            Tag::BlockQuote(_) => {
                self.block_gap();
                self.out.push_str("<blockquote>");
            }
            Tag::CodeBlock(kind) => {
                self.block_gap();
                self.in_code_block = true;
                match kind {
                    CodeBlockKind::Fenced(lang) if is_language(&lang) => {
                        self.code_has_language = true;
                        self.out
                            .push_str(&format!("<pre><code class=\"language-{lang}\">"));
                    }
                    _ => {
                        self.code_has_language = false;
                        self.out.push_str("<pre>");
                    }
                }
            }
            Tag::List(start) => {
                if self.lists.is_empty() {
                    self.block_gap();
                }
                self.lists.push(start);
            }
            Tag::Item => {
                self.line_start();
                let depth = self.lists.len().saturating_sub(1);
                self.out.push_str(&"  ".repeat(depth));
                match self.lists.last_mut() {
                    Some(Some(n)) => {
                        self.out.push_str(&format!("{n}. "));
                        *n += 1;
                    }
                    _ => self.out.push_str("• "),
                }
            }
            Tag::Emphasis => self.out.push_str("<i>"),
            Tag::Strong => self.out.push_str("<b>"),
            Tag::Strikethrough => self.out.push_str("<s>"),
            Tag::Link { dest_url, .. } => {
                let keep = link_allowed(&dest_url);
                if keep {
                    self.out
                        .push_str(&format!("<a href=\"{}\">", escape(&dest_url)));
                }
                self.links.push(keep);
            }
            Tag::Image { dest_url, .. } => {
                // Telegram shows no inline images: the alt text, then where it is.
                self.links.push(false);
                self.out.push_str(&escape(&format!("[image: {dest_url}] ")));
            }
            Tag::TableRow | Tag::TableHead => self.line_start(),
            Tag::TableCell => {
                if !self.out.ends_with('\n') && !self.out.is_empty() {
                    self.out.push_str(" | ");
                }
            }
            Tag::FootnoteDefinition(label) => {
                self.block_gap();
                self.out.push_str(&escape(&format!("[{label}]: ")));
            }
            Tag::HtmlBlock
            | Tag::DefinitionList
            | Tag::DefinitionListTitle
            | Tag::DefinitionListDefinition
            | Tag::MetadataBlock(_)
            | Tag::Superscript
            | Tag::Subscript => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => self.out.push_str("</b>"),
            TagEnd::BlockQuote(_) => {
                trim_trailing_newlines(&mut self.out);
                self.out.push_str("</blockquote>");
            }
            TagEnd::CodeBlock => {
                trim_trailing_newlines(&mut self.out);
                let close = if self.code_has_language {
                    "</code></pre>"
                } else {
                    "</pre>"
                };
                self.out.push_str(close);
                self.in_code_block = false;
            }
            TagEnd::List(_) => {
                self.lists.pop();
            }
            TagEnd::Emphasis => self.out.push_str("</i>"),
            TagEnd::Strong => self.out.push_str("</b>"),
            TagEnd::Strikethrough => self.out.push_str("</s>"),
            TagEnd::Link if self.links.pop() == Some(true) => self.out.push_str("</a>"),
            TagEnd::Image => {
                self.links.pop();
            }
            _ => {}
        }
    }

    /// A blank line before a block (none at the start).
    fn block_gap(&mut self) {
        if self.out.is_empty() || self.in_code_block {
            return;
        }
        trim_trailing_newlines(&mut self.out);
        if !self.out.ends_with("<blockquote>") {
            self.out.push_str("\n\n");
        }
    }

    /// A new line (none at the start).
    fn line_start(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    fn finish(mut self) -> String {
        trim_trailing_newlines(&mut self.out);
        self.out
    }
}

/// A fenced block's language, kept only when it is a plain name (it lands in an attribute).
fn is_language(lang: &str) -> bool {
    !lang.is_empty()
        && lang.len() <= 32
        && lang
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'#'))
}

fn trim_trailing_newlines(text: &mut String) {
    while text.ends_with('\n') {
        text.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders_to_telegram_html() {
        let table: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
            (
                "**bold** and *it* and ~~gone~~",
                "<b>bold</b> and <i>it</i> and <s>gone</s>",
            ),
            ("`x<y`", "<code>x&lt;y</code>"),
            (
                "```rust\nlet a = 1 < 2;\n```",
                "<pre><code class=\"language-rust\">let a = 1 &lt; 2;</code></pre>",
            ),
            ("```\nplain\n```", "<pre>plain</pre>"),
            ("```bad\"lang\nx\n```", "<pre>x</pre>"),
            (
                "[site](https://example.org/?a=1&b=\"2\")",
                "<a href=\"https://example.org/?a=1&amp;b=&quot;2&quot;\">site</a>",
            ),
            ("[evil](javascript:alert(1))", "evil"),
            ("<b onclick=x>raw</b>", "&lt;b onclick=x&gt;raw&lt;/b&gt;"),
            ("# Title\n\ntext", "<b>Title</b>\n\ntext"),
            ("- one\n- two", "• one\n• two"),
            ("3. three\n4. four", "3. three\n4. four"),
            ("> quoted\n> more", "<blockquote>quoted\nmore</blockquote>"),
            ("para one\n\npara two", "para one\n\npara two"),
            ("line one  \nline two", "line one\nline two"),
            (
                "![alt](https://x.org/i.png)",
                "[image: https://x.org/i.png] alt",
            ),
        ];
        for (markdown, expected) in table {
            assert_eq!(html(markdown), *expected, "{markdown:?}");
        }
    }

    #[test]
    fn hostile_markdown_never_yields_unbalanced_tags() {
        for markdown in [
            "**unclosed",
            "<pre>",
            "</a>",
            "[x](https://a.org) **[y](tg://resolve?domain=z)**",
            "> - *a*\n> - `b`",
            "| a | b |\n|---|---|\n| <i> | & |",
        ] {
            let out = html(markdown);
            for tag in ["b", "i", "s", "a", "code", "pre", "blockquote"] {
                let opens = out.matches(&format!("<{tag}>")).count()
                    + out.matches(&format!("<{tag} ")).count();
                let closes = out.matches(&format!("</{tag}>")).count();
                assert_eq!(opens, closes, "{tag} in {out:?} from {markdown:?}");
            }
        }
    }
}
