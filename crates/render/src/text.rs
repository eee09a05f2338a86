//! The plain-text body generated from the HTML template, once per step.

use std::cell::RefCell;
use std::rc::Rc;

use html2text::render::{TaggedLine, TextDecorator};

use crate::error::{RenderError, TemplatePart};
use crate::protect::{protect, Mode};

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

/// Tidies a rendered text body: no trailing spaces, at most one empty line
/// in a row (blocks that are off leave gaps), CRLF-free.
pub(crate) fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut empty_run = 0;
    for line in text.trim().lines() {
        let line = line.trim_end();
        if line.is_empty() {
            empty_run += 1;
            if empty_run > 1 {
                continue;
            }
        } else {
            empty_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
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
    }
}
