//! Keeps template tags intact while an HTML parser (CSS inliner, HTML to
//! text) works on a template's source.
//!
//! An HTML parser moves text that sits between table rows and escapes `<`,
//! so tags are swapped for placeholders first: in element content a comment
//! (`<!--mbt:N-->`, which the parser never moves), inside a tag, a comment
//! or raw text (title, style, ...) a private-use marker (`\u{E000}N\u{E001}`).

use crate::error::{RenderError, TemplatePart};

/// One template tag in a source.
#[derive(Debug, Clone)]
pub(crate) struct Tag<'a> {
    pub src: &'a str,
    pub start: usize,
    pub line: usize,
    pub kind: TagKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagKind {
    /// `{{ ... }}`
    Expr,
    /// `{% ... %}`
    Stmt,
    /// `{# ... #}`
    Comment,
}

/// Finds every template tag, skipping over string literals inside tags.
pub(crate) fn scan_tags(src: &str) -> Vec<Tag<'_>> {
    let bytes = src.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let mut line_counted_to = 0;
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        let (kind, close) = match bytes[i + 1] {
            b'{' => (TagKind::Expr, b'}'),
            b'%' => (TagKind::Stmt, b'%'),
            b'#' => (TagKind::Comment, b'#'),
            _ => {
                i += 1;
                continue;
            }
        };
        line += bytes[line_counted_to..i]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        line_counted_to = i;
        let mut j = i + 2;
        let mut quote: Option<u8> = None;
        let mut end = bytes.len();
        while j < bytes.len() {
            let b = bytes[j];
            match quote {
                Some(q) => {
                    if b == b'\\' {
                        j += 1;
                    } else if b == q {
                        quote = None;
                    }
                }
                None => {
                    if kind != TagKind::Comment && (b == b'"' || b == b'\'') {
                        quote = Some(b);
                    } else if b == close && bytes.get(j + 1) == Some(&b'}') {
                        end = j + 2;
                        break;
                    }
                }
            }
            j += 1;
        }
        tags.push(Tag {
            src: &src[i..end],
            start: i,
            line,
            kind,
        });
        i = end;
    }
    tags
}

/// Where an HTML lexer is when a template tag appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HtmlContext {
    /// Element content: the tag can become a comment.
    Content,
    /// Inside `<...>`, an HTML comment or raw text: only a text marker fits.
    Inline,
}

/// A tiny HTML lexer that follows just enough state to place placeholders.
struct HtmlLexer {
    state: LexState,
    /// Name of the element whose raw text we are in.
    raw_end: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LexState {
    Data,
    Tag { quote: Option<u8> },
    Comment,
    RawText,
}

const RAW_ELEMENTS: [&str; 4] = ["title", "style", "script", "textarea"];

impl HtmlLexer {
    fn new() -> Self {
        HtmlLexer {
            state: LexState::Data,
            raw_end: None,
        }
    }

    fn context(&self) -> HtmlContext {
        if self.state == LexState::Data {
            HtmlContext::Content
        } else {
            HtmlContext::Inline
        }
    }

    fn feed(&mut self, text: &str) {
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match self.state {
                LexState::Data => {
                    if b[i] == b'<' {
                        if text[i..].starts_with("<!--") {
                            self.state = LexState::Comment;
                            i += 4;
                            continue;
                        }
                        if let Some(&n) = b.get(i + 1) {
                            if n.is_ascii_alphabetic() || n == b'/' || n == b'!' || n == b'?' {
                                self.raw_end = None;
                                if n.is_ascii_alphabetic() {
                                    let name_end = b[i + 1..]
                                        .iter()
                                        .position(|c| !c.is_ascii_alphanumeric())
                                        .map_or(b.len(), |p| i + 1 + p);
                                    let name = &text[i + 1..name_end];
                                    self.raw_end = RAW_ELEMENTS
                                        .iter()
                                        .find(|r| r.eq_ignore_ascii_case(name))
                                        .copied();
                                }
                                self.state = LexState::Tag { quote: None };
                            }
                        }
                    }
                    i += 1;
                }
                LexState::Tag { quote } => {
                    let c = b[i];
                    match quote {
                        Some(q) if c == q => self.state = LexState::Tag { quote: None },
                        Some(_) => {}
                        None if c == b'"' || c == b'\'' => {
                            self.state = LexState::Tag { quote: Some(c) }
                        }
                        None if c == b'>' => {
                            self.state = if self.raw_end.is_some() {
                                LexState::RawText
                            } else {
                                LexState::Data
                            };
                        }
                        None => {}
                    }
                    i += 1;
                }
                LexState::Comment => {
                    if text[i..].starts_with("-->") {
                        self.state = LexState::Data;
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                LexState::RawText => {
                    if b[i] == b'<' && b.get(i + 1) == Some(&b'/') {
                        let rest = &text[i + 2..];
                        if let Some(name) = self.raw_end {
                            if rest.len() >= name.len()
                                && rest.as_bytes()[..name.len()]
                                    .eq_ignore_ascii_case(name.as_bytes())
                            {
                                self.raw_end = None;
                                self.state = LexState::Tag { quote: None };
                                i += 2;
                                continue;
                            }
                        }
                    }
                    i += 1;
                }
            }
        }
    }
}

const MARK_OPEN: char = '\u{E000}';
const MARK_CLOSE: char = '\u{E001}';
const COMMENT_OPEN: &str = "<!--mbt:";

/// What the protected source is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// One document for the CSS inliner: statements in content become comments.
    Css,
    /// Pieces for HTML-to-text: the source is cut at statements in content
    /// (a text converter drops comments), expressions become markers.
    Text,
}

/// A source with its template tags swapped for placeholders.
pub(crate) struct Protected<'a> {
    /// The protected source: one piece for [`Mode::Css`]; for [`Mode::Text`]
    /// the pieces between the statements in `cuts`.
    pub pieces: Vec<String>,
    /// The statement tags the source was cut at ([`Mode::Text`] only).
    pub cuts: Vec<&'a str>,
    tags: Vec<Tag<'a>>,
}

/// Swaps every template tag for a placeholder the HTML parser keeps in place.
pub(crate) fn protect(src: &str, mode: Mode) -> Protected<'_> {
    let tags = scan_tags(src);
    let mut pieces = Vec::new();
    let mut cuts = Vec::new();
    let mut html = String::with_capacity(src.len() + tags.len() * 8);
    let mut lexer = HtmlLexer::new();
    let mut pos = 0;
    for (n, tag) in tags.iter().enumerate() {
        let text = &src[pos..tag.start];
        lexer.feed(text);
        html.push_str(text);
        match (lexer.context(), mode, tag.kind) {
            (HtmlContext::Content, Mode::Css, _) => {
                html.push_str(COMMENT_OPEN);
                html.push_str(&n.to_string());
                html.push_str("-->");
            }
            (HtmlContext::Content, Mode::Text, TagKind::Stmt | TagKind::Comment) => {
                pieces.push(std::mem::take(&mut html));
                cuts.push(tag.src);
            }
            _ => push_marker(&mut html, n),
        }
        pos = tag.start + tag.src.len();
    }
    html.push_str(&src[pos..]);
    pieces.push(html);
    Protected { pieces, cuts, tags }
}

fn push_marker(out: &mut String, n: usize) {
    out.push(MARK_OPEN);
    out.push_str(&n.to_string());
    out.push(MARK_CLOSE);
}

impl Protected<'_> {
    /// Puts the original tags back into `processed` (the parser's output);
    /// every tag must come back exactly once, or the template would change
    /// meaning.
    pub(crate) fn restore(
        &self,
        processed: &str,
        part: TemplatePart,
    ) -> Result<String, RenderError> {
        let mut seen = vec![false; self.tags.len()];
        let out = self.restore_into(processed, &mut seen);
        if let Some(missing) = seen.iter().position(|s| !s) {
            let tag = &self.tags[missing];
            return Err(RenderError::Prepare {
                part,
                reason: format!(
                    "line {}: the tag `{}` sits where the HTML parser drops it",
                    tag.line, tag.src
                ),
            });
        }
        Ok(out)
    }

    /// Puts back whichever tags survived (used for the text version, where
    /// tags inside HTML attributes vanish with the attribute).
    pub(crate) fn restore_lenient(&self, processed: &str) -> String {
        let mut seen = vec![false; self.tags.len()];
        self.restore_into(processed, &mut seen)
    }

    fn restore_into(&self, processed: &str, seen: &mut [bool]) -> String {
        let mut out = String::with_capacity(processed.len() + self.tags.len() * 16);
        let mut rest = processed;
        loop {
            let next_comment = rest.find(COMMENT_OPEN);
            let next_mark = rest.find(MARK_OPEN);
            let (at, is_comment) = match (next_comment, next_mark) {
                (None, None) => break,
                (Some(c), Some(m)) if c < m => (c, true),
                (Some(c), None) => (c, true),
                (_, Some(m)) => (m, false),
            };
            out.push_str(&rest[..at]);
            let after = if is_comment {
                &rest[at + COMMENT_OPEN.len()..]
            } else {
                &rest[at + MARK_OPEN.len_utf8()..]
            };
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let closer = if is_comment { "-->" } else { "\u{E001}" };
            let index = after[..digits].parse::<usize>().ok();
            match index {
                Some(n) if n < self.tags.len() && after[digits..].starts_with(closer) => {
                    out.push_str(self.tags[n].src);
                    seen[n] = true;
                    let mut tail = &after[digits + closer.len()..];
                    // A marker that stood among attributes became an
                    // attribute name; drop the empty value the serializer adds.
                    if !is_comment {
                        if let Some(t) = tail.strip_prefix("=\"\"") {
                            tail = t;
                        }
                    }
                    rest = tail;
                }
                _ => {
                    // Not ours: keep the text as it is.
                    let skip = if is_comment {
                        COMMENT_OPEN.len()
                    } else {
                        MARK_OPEN.len_utf8()
                    };
                    out.push_str(&rest[at..at + skip]);
                    rest = &rest[at + skip..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_tags_with_lines_and_strings() {
        let src = "a {{ x }}\nb {% if y == \"%}\" %}c{% endif %}\n{# note #}";
        let tags = scan_tags(src);
        let found: Vec<_> = tags.iter().map(|t| (t.src, t.line, t.kind)).collect();
        assert_eq!(
            found,
            vec![
                ("{{ x }}", 1, TagKind::Expr),
                ("{% if y == \"%}\" %}", 2, TagKind::Stmt),
                ("{% endif %}", 2, TagKind::Stmt),
                ("{# note #}", 3, TagKind::Comment),
            ]
        );
    }

    #[test]
    fn places_comments_in_content_and_markers_in_tags() {
        let src = "<title>{{ a }}</title><a href=\"{{ b }}\">{{ c }}</a>";
        let p = protect(src, Mode::Css);
        assert_eq!(
            p.pieces[0],
            "<title>\u{E000}0\u{E001}</title><a href=\"\u{E000}1\u{E001}\"><!--mbt:2--></a>"
        );
        assert_eq!(p.restore(&p.pieces[0], TemplatePart::Html).unwrap(), src);
    }

    #[test]
    fn restore_reports_a_lost_tag_with_its_line() {
        let src = "<p>\n{{ a }}</p>";
        let p = protect(src, Mode::Css);
        let err = p.restore("<p></p>", TemplatePart::Html).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn restore_drops_empty_attribute_values_of_markers() {
        let src = "<td {% if x %}bgcolor=\"red\"{% endif %}>";
        let p = protect(src, Mode::Css);
        let serialized = "<td \u{E000}0\u{E001}=\"\" bgcolor=\"red\" \u{E000}1\u{E001}=\"\">";
        assert_eq!(
            p.restore(serialized, TemplatePart::Html).unwrap(),
            "<td {% if x %} bgcolor=\"red\" {% endif %}>"
        );
    }
}
