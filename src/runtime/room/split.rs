//! How a long reply is delivered: in one message, in several, or as a file.
//!
//! Why this exists: messengers refuse messages past a size (Matrix: 64 KiB per event, and an
//! encrypted room inflates the body; the rendered HTML doubles it). An agent's reply past that
//! would fail for good and the person would hear nothing. These are the pure decisions: where a
//! long text may be cut (between paragraphs and code blocks; inside a fenced code block only
//! when the block alone is too long, closing and reopening its fence; never inside a UTF-8
//! character), and whether it goes inline at all ([`plan`]). The room actor carries the plan
//! out (`super::reply`).

/// Smallest part size the splitter works with (room for a fence, its closing and some text);
/// a smaller limit is raised to this.
pub const MIN_PART_BYTES: usize = 64;
/// Most messages one reply becomes; past this it is sent as a file.
pub const MAX_REPLY_PARTS: usize = 32;

/// The limits of a reply (config `[replies]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Largest message, in bytes of text.
    pub max_message_bytes: usize,
    /// Largest reply sent as messages; past it the reply goes as a file.
    pub max_inline_bytes: usize,
}

/// How to deliver a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyPlan {
    /// As these messages, in order (one when it fits).
    Messages(Vec<String>),
    /// As a file (the whole text), with a short message.
    File,
}

/// Decides how `text` is delivered under `limits`.
pub fn plan(text: &str, limits: &ReplyLimits) -> ReplyPlan {
    if text.len() > limits.max_inline_bytes {
        return ReplyPlan::File;
    }
    let parts = split(text, limits.max_message_bytes);
    if parts.len() > MAX_REPLY_PARTS {
        ReplyPlan::File
    } else {
        ReplyPlan::Messages(parts)
    }
}

/// Splits `text` into parts of at most `max_bytes` bytes (at least [`MIN_PART_BYTES`]),
/// preferring paragraph and code-block boundaries, then line boundaries, then spaces; a fenced
/// code block cut in two is closed at the end of one part and reopened (same fence, same info
/// string) at the start of the next. A text that fits is returned as it is.
pub fn split(text: &str, max_bytes: usize) -> Vec<String> {
    let max = max_bytes.max(MIN_PART_BYTES);
    if text.len() <= max {
        return vec![text.to_owned()];
    }
    let mut out = Parts::new(max);
    for block in blocks(text) {
        match block {
            Block::Text(t) => out.push_text(t),
            Block::Code { open, body, close } => out.push_code(open, &body, close),
        }
    }
    out.finish()
}

/// If `text` ends inside a fenced code block, the line that closes it (e.g. "```").
pub fn unclosed_fence(text: &str) -> Option<String> {
    let mut open: Option<Fence> = None;
    for line in text.split_inclusive('\n') {
        match &open {
            None => open = Fence::opening(line),
            Some(fence) if fence.closes(line) => open = None,
            Some(_) => {}
        }
    }
    open.map(|f| f.closing())
}

/// A fence: its character and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fence {
    ch: char,
    len: usize,
}

/// Most spaces before a fence (CommonMark: more makes it indented code).
const MAX_FENCE_INDENT: usize = 3;
/// Fewest fence characters.
const MIN_FENCE_LEN: usize = 3;

impl Fence {
    /// The fence this line opens, if it opens one.
    fn opening(line: &str) -> Option<Fence> {
        let trimmed = line.trim_start_matches(' ');
        if line.len() - trimmed.len() > MAX_FENCE_INDENT {
            return None;
        }
        let ch = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
        let len = trimmed.chars().take_while(|c| *c == ch).count();
        if len < MIN_FENCE_LEN {
            return None;
        }
        // A backtick fence's info string must not hold a backtick.
        let info = &trimmed[len..];
        if ch == '`' && info.contains('`') {
            return None;
        }
        Some(Fence { ch, len })
    }

    /// Whether `line` closes this fence.
    fn closes(&self, line: &str) -> bool {
        let trimmed = line.trim_start_matches(' ');
        if line.len() - trimmed.len() > MAX_FENCE_INDENT {
            return false;
        }
        let len = trimmed.chars().take_while(|c| *c == self.ch).count();
        len >= self.len && trimmed[len..].trim().is_empty()
    }

    /// A line closing this fence.
    fn closing(&self) -> String {
        std::iter::repeat_n(self.ch, self.len).collect()
    }
}

/// A piece of the text that is best kept whole.
#[derive(Debug, PartialEq, Eq)]
enum Block<'a> {
    /// Lines outside code blocks: a paragraph and the blank lines after it.
    Text(&'a str),
    /// A fenced code block: its opening line, its lines, its closing line (`None` when the
    /// text ends inside it).
    Code {
        open: &'a str,
        body: Vec<&'a str>,
        close: Option<&'a str>,
    },
}

/// Cuts `text` into paragraphs (with their trailing blank lines) and fenced code blocks.
fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    let mut para_start: Option<usize> = None;
    let mut in_blank = false;
    let mut code: Option<(Fence, &str, Vec<&str>)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        if let Some((fence, open, body)) = &mut code {
            if fence.closes(line) {
                out.push(Block::Code {
                    open,
                    body: std::mem::take(body),
                    close: Some(line),
                });
                code = None;
            } else {
                body.push(line);
            }
            continue;
        }
        if let Some(fence) = Fence::opening(line) {
            if let Some(s) = para_start.take() {
                out.push(Block::Text(&text[s..start]));
            }
            in_blank = false;
            code = Some((fence, line, Vec::new()));
            continue;
        }
        let blank = line.trim().is_empty();
        if !blank && in_blank {
            // A new paragraph starts: the previous one (with its blank lines) is a block.
            if let Some(s) = para_start.take() {
                out.push(Block::Text(&text[s..start]));
            }
        }
        in_blank = blank;
        para_start.get_or_insert(start);
    }
    if let Some((_, open, body)) = code {
        out.push(Block::Code {
            open,
            body,
            close: None,
        });
    }
    if let Some(s) = para_start {
        out.push(Block::Text(&text[s..]));
    }
    out
}

/// The parts being built.
struct Parts {
    max: usize,
    done: Vec<String>,
    current: String,
}

impl Parts {
    fn new(max: usize) -> Self {
        Parts {
            max,
            done: Vec::new(),
            current: String::new(),
        }
    }

    /// Ends the current part (if it holds anything but blanks).
    fn flush(&mut self) {
        let part = std::mem::take(&mut self.current);
        let part = part.trim_end();
        if !part.trim().is_empty() {
            self.done.push(part.to_owned());
        }
    }

    /// Appends `s` to the current part if it fits, else starts a new part with it if it
    /// fits there; false if it fits in no part.
    fn add(&mut self, s: &str) -> bool {
        if self.current.len() + s.len() <= self.max {
            self.current.push_str(s);
            return true;
        }
        if s.len() <= self.max {
            self.flush();
            self.current.push_str(s.trim_start_matches('\n'));
            return true;
        }
        false
    }

    /// A paragraph: whole if it fits, else line by line, a too long line cut at spaces.
    fn push_text(&mut self, t: &str) {
        if self.add(t) {
            return;
        }
        for line in t.split_inclusive('\n') {
            if self.add(line) {
                continue;
            }
            let mut rest = line;
            while !rest.is_empty() {
                let room = self.max - self.current.len();
                let cut = cut_point(rest, room, true);
                if cut == 0 {
                    self.flush();
                    continue;
                }
                self.current.push_str(&rest[..cut]);
                rest = &rest[cut..];
                if !rest.is_empty() {
                    self.flush();
                }
            }
        }
    }

    /// A fenced code block: whole if it fits, else cut between lines (a too long line cut
    /// anywhere), each piece wrapped in the block's fence.
    fn push_code(&mut self, open: &str, body: &[&str], close: Option<&str>) {
        let whole: String = std::iter::once(open)
            .chain(body.iter().copied())
            .chain(close)
            .collect();
        if self.add(&whole) {
            return;
        }
        let fence = Fence::opening(open)
            .map(|f| f.closing())
            .unwrap_or_default();
        let open_line = if open.ends_with('\n') {
            open.to_owned()
        } else {
            format!("{open}\n")
        };
        let close_line = format!("{fence}\n");
        let overhead = open_line.len() + close_line.len();
        if overhead + MIN_PART_BYTES / 2 > self.max {
            // A fence too long to repeat: the block goes as plain lines.
            self.push_text(&whole);
            return;
        }
        // Each piece: the opening line, lines, a newline if the last line lacks one, the
        // closing line.
        let budget = self.max - overhead - 1;
        let mut piece = String::new();
        let mut pieces = Vec::new();
        for line in body {
            if piece.len() + line.len() <= budget {
                piece.push_str(line);
                continue;
            }
            if !piece.is_empty() {
                pieces.push(std::mem::take(&mut piece));
            }
            let mut rest: &str = line;
            while rest.len() > budget {
                let cut = cut_point(rest, budget, false);
                pieces.push(rest[..cut].to_owned());
                rest = &rest[cut..];
            }
            piece.push_str(rest);
        }
        if !piece.is_empty() || pieces.is_empty() {
            pieces.push(piece);
        }
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut s = open_line.clone();
            s.push_str(&piece);
            if !s.ends_with('\n') {
                s.push('\n');
            }
            if i < last || close.is_some() {
                s.push_str(&close_line);
            }
            // Each piece fits a part of its own by construction.
            if !self.add(&s) {
                self.flush();
                self.current.push_str(&s);
            }
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.flush();
        self.done
    }
}

/// Where to cut `s` to keep at most `room` bytes: a char boundary, at the last space in the
/// second half of the room when `at_space`; `s.len()` if it fits; 0 if not even one char fits.
fn cut_point(s: &str, room: usize, at_space: bool) -> usize {
    if s.len() <= room {
        return s.len();
    }
    let mut cut = room;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    if at_space {
        if let Some(space) = s[..cut].rfind(' ') {
            if space + 1 > room / 2 {
                return space + 1;
            }
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(message: usize, inline: usize) -> ReplyLimits {
        ReplyLimits {
            max_message_bytes: message,
            max_inline_bytes: inline,
        }
    }

    /// Every fence line of `part` is balanced (an even number of fence lines).
    fn fences_balanced(part: &str) -> bool {
        unclosed_fence(part).is_none()
    }

    /// The words of `s` outside fence lines (what a person reads).
    fn words(s: &str) -> Vec<String> {
        s.lines()
            .filter(|l| Fence::opening(l).is_none())
            .flat_map(|l| l.split_whitespace())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn short_texts_are_kept_as_they_are() {
        for text in ["", "hi", "a\n\nb", "```\ncode\n```"] {
            assert_eq!(split(text, 100), vec![text.to_owned()], "{text:?}");
        }
    }

    #[test]
    fn split_table() {
        let para = |c: char, n: usize| std::iter::repeat_n(c, n).collect::<String>();
        let (a, b, c) = (para('a', 40), para('b', 40), para('c', 40));
        let cases: Vec<(&str, String, usize, Vec<String>)> = vec![
            (
                "paragraphs pack two per part",
                format!("{a}\n\n{b}\n\n{c}"),
                90,
                vec![format!("{a}\n\n{b}"), c.clone()],
            ),
            (
                "one paragraph per part",
                format!("{a}\n\n{b}\n\n{c}"),
                64,
                vec![a.clone(), b.clone(), c.clone()],
            ),
            (
                "a code block is not cut when it fits a part",
                format!("{a}\n\n```rust\nlet x = 1;\nlet y = 2;\n```\n{b}"),
                64,
                vec![
                    a.clone(),
                    "```rust\nlet x = 1;\nlet y = 2;\n```".to_owned(),
                    b.clone(),
                ],
            ),
            (
                "a long line is cut at a space",
                format!("{} {}", para('x', 50), para('y', 50)),
                64,
                vec![
                    format!("{} ", para('x', 50)).trim_end().to_owned(),
                    para('y', 50),
                ],
            ),
            (
                "a too long code block is closed and reopened",
                format!("```py\n{}\n{}\n```", para('1', 30), para('2', 30)),
                64,
                vec![
                    format!("```py\n{}\n```", para('1', 30)),
                    format!("```py\n{}\n```", para('2', 30)),
                ],
            ),
            (
                "tilde fences too",
                format!("~~~~\n{}\n{}\n~~~~", para('1', 30), para('2', 30)),
                64,
                vec![
                    format!("~~~~\n{}\n~~~~", para('1', 30)),
                    format!("~~~~\n{}\n~~~~", para('2', 30)),
                ],
            ),
        ];
        for (name, text, max, want) in cases {
            assert_eq!(split(&text, max), want, "{name}");
        }
    }

    #[test]
    fn never_cuts_inside_a_character() {
        // 3-byte and 4-byte characters with no spaces: every cut must land on a boundary.
        for text in [
            "€".repeat(100),
            "🦀".repeat(100),
            format!("a{}", "é".repeat(99)),
        ] {
            let parts = split(&text, 64);
            assert!(parts.len() > 1);
            for part in &parts {
                assert!(part.len() <= 64, "{} bytes", part.len());
            }
            assert_eq!(parts.concat(), text);
        }
    }

    #[test]
    fn every_part_fits_and_nothing_is_lost() {
        let mut text = String::new();
        for i in 0..200 {
            match i % 7 {
                0 => text.push_str(&format!("```\n{}\n```\n\n", "code line\n".repeat(i % 23))),
                1 => text.push_str(&format!("{}\n", "long-word".repeat(i))),
                2 => text.push_str("- item one\n- item two\n\n"),
                3 => text.push_str(&format!("{}\n\n", "ünïcödé 🦀 ".repeat(i % 13))),
                _ => text.push_str(&format!("Paragraph {i} says something.\n\n")),
            }
        }
        for max in [64, 100, 1000, 16 * 1024] {
            let parts = split(&text, max);
            for part in &parts {
                assert!(part.len() <= max, "{} > {max}", part.len());
                assert!(fences_balanced(part), "unbalanced part {part:?}");
                assert!(!part.trim().is_empty());
            }
            let got = words(&parts.join("\n"));
            let want = words(&text);
            // Words cut at a part boundary appear split; compare the letters.
            assert_eq!(got.concat(), want.concat(), "max {max}");
        }
    }

    #[test]
    fn an_unclosed_block_stays_unclosed_at_the_end() {
        let text = format!("```\n{}", "line of code\n".repeat(20));
        let parts = split(&text, 100);
        assert!(parts.len() > 1);
        for part in &parts[..parts.len() - 1] {
            assert!(fences_balanced(part), "{part:?}");
        }
        assert!(parts.iter().all(|p| p.starts_with("```\n")));
    }

    #[test]
    fn unclosed_fences() {
        let cases = [
            ("no code", None),
            ("```\ncode\n```\n", None),
            ("```rust\ncode", Some("```")),
            ("~~~~\ncode\n~~~\n", Some("~~~~")),
            ("````\n```\n", Some("````")),
            ("    ```\nindented code, not a fence", None),
            ("``` a`b\nnot a fence", None),
        ];
        for (text, want) in cases {
            assert_eq!(unclosed_fence(text).as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn plans() {
        let l = limits(100, 1000);
        assert_eq!(plan("short", &l), ReplyPlan::Messages(vec!["short".into()]));
        let three = format!(
            "{}\n\n{}\n\n{}",
            "a".repeat(90),
            "b".repeat(90),
            "c".repeat(90)
        );
        match plan(&three, &l) {
            ReplyPlan::Messages(parts) => assert_eq!(parts.len(), 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(plan(&"x".repeat(1001), &l), ReplyPlan::File);
        // More parts than MAX_REPLY_PARTS: a file, whatever the inline limit.
        let many = "word ".repeat(MAX_REPLY_PARTS * 64);
        assert_eq!(plan(&many, &limits(64, usize::MAX)), ReplyPlan::File);
    }
}
