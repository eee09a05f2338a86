//! The plain-text body generated from the HTML template, once per step.

use std::cell::RefCell;
use std::rc::Rc;

use html2text::render::{TaggedLine, TextDecorator};

use crate::error::{RenderError, TemplatePart};
use crate::protect::{protect, scan_tags, Mode};

/// Line width of generated text bodies.
const WIDTH: usize = 78;

/// Plain text with links written inline as `text (url)`, which reads better
/// in a mail than footnotes and survives being cut into pieces. While
/// wrapping, a URL stands as a short token (`urls` holds the URLs) so the
/// wrapper never chops one.
#[derive(Clone, Debug, Default)]
struct InlineLinks {
    links: Vec<String>,
    urls: Rc<RefCell<Vec<String>>>,
}

const URL_OPEN: char = '\u{E002}';
const URL_CLOSE: char = '\u{E003}';

impl TextDecorator for InlineLinks {
    type Annotation = ();

    fn decorate_link_start(&mut self, url: &str) -> (String, ()) {
        self.links.push(url.to_owned());
        (String::new(), ())
    }
    fn decorate_link_end(&mut self) -> String {
        match self.links.pop() {
            Some(url) if !url.is_empty() && !url.starts_with('#') => {
                let mut urls = self.urls.borrow_mut();
                urls.push(url);
                format!(" ({URL_OPEN}{}{URL_CLOSE})", urls.len() - 1)
            }
            _ => String::new(),
        }
    }
    fn decorate_em_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_em_end(&self) -> String {
        String::new()
    }
    fn decorate_strong_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strong_end(&self) -> String {
        String::new()
    }
    fn decorate_strikeout_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }
    fn decorate_code_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_code_end(&self) -> String {
        String::new()
    }
    fn decorate_preformat_first(&self) {}
    fn decorate_preformat_cont(&self) {}
    fn decorate_image(&mut self, _src: &str, title: &str) -> (String, ()) {
        (title.to_owned(), ())
    }
    fn header_prefix(&self, level: usize) -> String {
        if level <= 2 {
            String::new()
        } else {
            "#".repeat(level) + " "
        }
    }
    fn quote_prefix(&self) -> String {
        "> ".to_owned()
    }
    fn unordered_item_prefix(&self) -> String {
        "- ".to_owned()
    }
    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }
    fn make_subblock_decorator(&self) -> Self {
        InlineLinks {
            links: Vec::new(),
            urls: Rc::clone(&self.urls),
        }
    }
    fn finalise(&mut self, _urls: Vec<String>) -> Vec<TaggedLine<()>> {
        Vec::new()
    }
}

fn to_text(html: &str) -> Result<String, RenderError> {
    let decorator = InlineLinks::default();
    let urls = Rc::clone(&decorator.urls);
    let text = html2text::config::with_decorator(decorator)
        .link_footnotes(false)
        .no_table_borders()
        .string_from_read(html.as_bytes(), WIDTH)
        .map_err(|e| RenderError::Prepare {
            part: TemplatePart::Text,
            reason: e.to_string(),
        })?;
    let urls = urls.borrow();
    let mut out = String::with_capacity(text.len() + urls.iter().map(String::len).sum::<usize>());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(URL_OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + URL_OPEN.len_utf8()..];
        let end = after.find(URL_CLOSE).unwrap_or(after.len());
        match after[..end].parse::<usize>().ok().and_then(|n| urls.get(n)) {
            Some(url) => out.push_str(url),
            None => out.push_str(&after[..end]),
        }
        rest = after.get(end + URL_CLOSE.len_utf8()..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// Turns an HTML template into a text template: each piece between
/// statement tags is converted on its own (so blocks keep switching) and
/// the tags are put back.
pub(crate) fn text_template_from_html(html_template: &str) -> Result<String, RenderError> {
    let protected = protect(html_template, Mode::Text);
    let mut out = String::with_capacity(html_template.len() / 2);
    for (i, piece) in protected.pieces.iter().enumerate() {
        if i > 0 {
            out.push_str(protected.cuts[i - 1]);
        }
        if !piece.trim().is_empty() {
            out.push_str(&to_text(piece)?);
        }
    }
    Ok(protected.restore_lenient(&out))
}

/// Drops the spaces and tabs that end lines of a text template outside its
/// tags: [`tidy`] would drop them from every rendered message anyway (a
/// tag's whitespace control that eats the line end eats them too), and
/// generated text pads many lines.
pub(crate) fn strip_line_ends(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut pos = 0;
    let strip = |out: &mut String, text: &str| {
        let mut rest = text;
        while let Some(nl) = rest.find('\n') {
            let line = &rest[..nl];
            let (line, cr) = match line.strip_suffix('\r') {
                Some(l) => (l, "\r"),
                None => (line, ""),
            };
            out.push_str(line.trim_end_matches([' ', '\t']));
            out.push_str(cr);
            out.push('\n');
            rest = &rest[nl + 1..];
        }
        out.push_str(rest);
    };
    for tag in scan_tags(template) {
        strip(&mut out, &template[pos..tag.start]);
        out.push_str(tag.src);
        pos = tag.start + tag.src.len();
    }
    strip(&mut out, &template[pos..]);
    out
}

/// `s` without trailing white space; ASCII is the fast path.
fn trim_end(s: &str) -> &str {
    let trimmed = s.trim_end_matches([' ', '\t', '\r', '\x0b', '\x0c']);
    match trimmed.as_bytes().last() {
        Some(&b) if b >= 0x80 => trimmed.trim_end(),
        _ => trimmed,
    }
}

/// Positions of `\n` in `text`, 8 bytes at a time.
fn newlines(text: &str) -> impl Iterator<Item = usize> + '_ {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let b = text.as_bytes();
    let chunks = b.chunks_exact(8);
    let tail_at = b.len() - chunks.remainder().len();
    let in_chunks = chunks.enumerate().flat_map(|(c, chunk)| {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes")) ^ (u64::from(b'\n') * ONES);
        // High bit set exactly where a byte of `x` is zero.
        let mut mask = !(((x & LOW7) + LOW7) | x | LOW7);
        std::iter::from_fn(move || {
            (mask != 0).then(|| {
                let at = c * 8 + (mask.trailing_zeros() / 8) as usize;
                mask &= mask - 1;
                at
            })
        })
    });
    let in_tail = (tail_at..b.len()).filter(move |&i| b[i] == b'\n');
    in_chunks.chain(in_tail)
}

/// Tidies a rendered text body: no trailing spaces, at most one empty line
/// in a row (blocks that are off leave gaps), CRLF-free. Copies the text
/// in spans between the places that change.
pub(crate) fn tidy(text: &str) -> String {
    let text = text.trim();
    let mut out = String::with_capacity(text.len() + 1);
    if text.is_empty() {
        return out;
    }
    let mut copied = 0;
    let mut line_start = 0;
    let mut empty_run = 0;
    for nl in newlines(text) {
        let line = &text[line_start..nl];
        let kept = trim_end(line).len();
        if kept == 0 {
            empty_run += 1;
        } else {
            empty_run = 0;
        }
        if empty_run > 1 {
            out.push_str(&text[copied..line_start]);
            copied = nl + 1;
        } else if kept < line.len() {
            out.push_str(&text[copied..line_start + kept]);
            copied = nl;
        }
        line_start = nl + 1;
    }
    out.push_str(&text[copied..]);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_template_keeps_tags_and_links() {
        let html = "<html><body><h1>Hallo {{ person.first_name }}</h1>\
            <table><tr><td>Intro</td></tr>{% if blocks.kids %}<tr><td>Kids</td></tr>{% endif %}</table>\
            <p><a href=\"{{ preferences_url }}\">Voorkeuren</a></p></body></html>";
        let text = text_template_from_html(html).unwrap();
        assert!(text.contains("Hallo {{ person.first_name }}"), "{text}");
        let if_at = text.find("{% if blocks.kids %}").expect(&text);
        let kids_at = text.find("Kids").unwrap();
        let endif_at = text.find("{% endif %}").unwrap();
        assert!(if_at < kids_at && kids_at < endif_at, "{text}");
        assert!(
            text.contains("Voorkeuren ({{ preferences_url }})"),
            "{text}"
        );
    }

    #[test]
    fn long_urls_are_never_wrapped() {
        let url = format!(
            "https://example.org/{}?a=1&b={{{{ step.name }}}}",
            "x".repeat(120)
        );
        let html = format!(
            "<p>{} <a href=\"{url}\">lees meer</a></p>",
            "woord ".repeat(20)
        );
        let text = text_template_from_html(&html).unwrap();
        assert!(text.contains(&format!("lees meer ({url})")), "{text}");
    }

    #[test]
    fn tidy_collapses_gaps() {
        assert_eq!(tidy("\n\na  \n\n\n\nb\n\n"), "a\n\nb\n");
        assert_eq!(tidy("a\u{a0} \r\n \t\r\nb\u{3000}"), "a\n\nb\n");
        assert_eq!(tidy(" \n "), "");
    }

    #[test]
    fn tidy_is_line_by_line_trimming() {
        // The plain statement of what `tidy` does, line by line.
        fn plain(text: &str) -> String {
            let mut out = String::new();
            let mut empty_run = 0;
            for line in text.trim().lines() {
                let line = line.trim_end();
                empty_run = if line.is_empty() { empty_run + 1 } else { 0 };
                if empty_run <= 1 {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out
        }
        let alphabet: Vec<char> = " \n\n\r\ta.\u{a0}\u{3000}bcdefgh".chars().collect();
        let mut seed = 99u64;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..seed % 70 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                text.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            assert_eq!(tidy(&text), plain(&text), "{text:?}");
        }
    }

    #[test]
    fn line_ends_are_stripped_outside_tags_only() {
        assert_eq!(
            strip_line_ends("a  \n{{ \"x  \n\" }}  \r\nb\t\n  {%- if y %}  \n{% endif %}"),
            "a\n{{ \"x  \n\" }}\r\nb\n  {%- if y %}\n{% endif %}"
        );
    }
}
