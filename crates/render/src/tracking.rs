//! Click and open tracking: rewriting the links of a message's bodies into the signed
//! redirect URLs of [`crate::tokens`].

use crate::tokens::LinkSigner;

/// Decodes the entities an HTML serializer or minijinja puts in an
/// attribute value.
pub(crate) fn unescape_attr(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains('&') {
        return value.into();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let entity = &tail[1..e];
            let c = match entity {
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "lt" => Some('<'),
                "gt" => Some('>'),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

pub(crate) fn is_trackable(url: &str, skip: &[&str]) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")) && !skip.contains(&url)
}

/// Whether `tail` starts with an `http(s)://` URL.
pub(crate) fn starts_with_url(tail: &str) -> bool {
    tail.starts_with("https://") || tail.starts_with("http://")
}

/// Length of the URL at the start of `tail` in a text body: up to white
/// space or a delimiter, less sentence punctuation right after it.
pub(crate) fn url_len(tail: &str) -> usize {
    let mut len = tail
        .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | ')' | ']'))
        .unwrap_or(tail.len());
    while len > 0
        && matches!(
            tail.as_bytes()[len - 1],
            b'.' | b',' | b';' | b':' | b'!' | b'?'
        )
    {
        len -= 1;
    }
    len
}

/// Marks, in a template made by [`crate::links`], the start of a link that
/// can only be tracked once rendered (its target is personalised). Never
/// left in a message: person values that hold it are escaped or cleaned.
pub(crate) const MARK: char = '\u{E010}';
const MARK_STR: &str = "\u{E010}";

/// Per-message memo so each distinct URL is signed once per recipient.
pub(crate) struct Rewriter<'a> {
    signer: &'a dyn LinkSigner,
    tracking_id: &'a str,
    skip: [&'a str; 3],
    memo: Vec<(String, String)>,
}

impl<'a> Rewriter<'a> {
    /// `skip`: links that must stay direct (preference centre, unsubscribe, web version).
    pub(crate) fn new(
        signer: &'a dyn LinkSigner,
        tracking_id: &'a str,
        skip: [&'a str; 3],
    ) -> Self {
        Rewriter {
            signer,
            tracking_id,
            skip,
            memo: Vec::new(),
        }
    }

    fn signed(&mut self, target: &str) -> &str {
        let i = match self.memo.iter().position(|(t, _)| t == target) {
            Some(i) => i,
            None => {
                let url = self.signer.click_url(self.tracking_id, target);
                self.memo.push((target.to_owned(), url));
                self.memo.len() - 1
            }
        };
        &self.memo[i].1
    }

    /// Rewrites `href="http(s)://..."` of `<a>` and `<area>` elements.
    pub(crate) fn rewrite_html(&mut self, html: &str) -> String {
        let mut out = String::with_capacity(html.len() + 4096);
        let mut rest = html;
        while let Some(at) = rest.find("href=\"") {
            let value_start = at + 6;
            let Some(len) = rest[value_start..].find('"') else {
                break;
            };
            let value = &rest[value_start..value_start + len];
            let in_anchor = rest[..at]
                .rfind('<')
                .map(|lt| {
                    let name = &rest.as_bytes()[lt + 1..];
                    let tag_is = |n: &[u8]| {
                        name.len() > n.len()
                            && name[..n.len()].eq_ignore_ascii_case(n)
                            && name[n.len()].is_ascii_whitespace()
                    };
                    tag_is(b"a") || tag_is(b"area")
                })
                .unwrap_or(false);
            out.push_str(&rest[..value_start]);
            let target = unescape_attr(value);
            if in_anchor && is_trackable(&target, &self.skip) {
                // Signed URLs are base64url: nothing to escape.
                out.push_str(self.signed(&target));
            } else {
                out.push_str(value);
            }
            rest = &rest[value_start + len..];
        }
        out.push_str(rest);
        out
    }

    /// Tracks the links marked with [`MARK`] right after their `href="`,
    /// and takes every mark out.
    pub(crate) fn rewrite_marked_html(&mut self, html: String) -> String {
        // The links marked sit in blocks that are often off: most messages
        // have none, and a substring search is the fastest way to tell.
        if !html.contains(MARK_STR) {
            return html;
        }
        let mut out = String::with_capacity(html.len() + 512);
        let mut rest = html.as_str();
        while let Some(at) = rest.find(MARK) {
            out.push_str(&rest[..at]);
            let after = &rest[at + MARK.len_utf8()..];
            let len = after.find(['"', MARK]).unwrap_or(after.len());
            let value = &after[..len];
            let target = unescape_attr(value);
            if is_trackable(&target, &self.skip) {
                out.push_str(self.signed(&target));
            } else {
                out.push_str(value);
            }
            rest = &after[len..];
        }
        out.push_str(rest);
        out
    }

    /// Tracks the URLs that start right after a [`MARK`] (where a template
    /// expression or a personalised URL began), and takes every mark out.
    pub(crate) fn rewrite_marked_text(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 512);
        let mut rest = text;
        while let Some(at) = rest.find(MARK) {
            out.push_str(&rest[..at]);
            let after = &rest[at + MARK.len_utf8()..];
            let boundary_ok = out
                .as_bytes()
                .last()
                .is_none_or(|b| !b.is_ascii_alphanumeric());
            if boundary_ok && starts_with_url(after) {
                let len = url_len(after).min(after.find(MARK).unwrap_or(after.len()));
                let url = &after[..len];
                if is_trackable(url, &self.skip) {
                    let signed = self.signed(url).to_owned();
                    out.push_str(&signed);
                } else {
                    out.push_str(url);
                }
                rest = &after[len..];
            } else {
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }

    /// Rewrites bare `http(s)://` URLs in a text body.
    pub(crate) fn rewrite_text(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 2048);
        let mut rest = text;
        while let Some(at) = rest.find("http") {
            let tail = &rest[at..];
            let is_url = starts_with_url(tail);
            let boundary_ok = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
            if !is_url || !boundary_ok {
                out.push_str(&rest[..at + 4]);
                rest = &rest[at + 4..];
                continue;
            }
            let len = url_len(tail);
            let url = &tail[..len];
            out.push_str(&rest[..at]);
            if is_trackable(url, &self.skip) {
                let signed = self.signed(url).to_owned();
                out.push_str(&signed);
            } else {
                out.push_str(url);
            }
            rest = &tail[len..];
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::tests::{signer, token_of};
    use crate::tokens::TrackedLink;

    #[test]
    fn marked_links_are_signed_and_marks_removed() {
        let s = signer();
        let mut rw = Rewriter::new(&s, "cm-1", ["https://p.example/prefs", "", ""]);
        let html = format!(
            "<a href=\"{MARK}https://e.org/p?id=7&amp;x=1\">a</a><a href=\"{MARK}https://p.example/prefs\">p</a><a href=\"{MARK}mailto:a@e.org\">m</a>"
        );
        let out = rw.rewrite_marked_html(html);
        assert!(!out.contains(MARK), "{out}");
        let first = out.split('"').nth(1).unwrap();
        assert_eq!(
            s.verify(token_of(first)).unwrap(),
            TrackedLink::Click {
                tracking_id: "cm-1".into(),
                target: "https://e.org/p?id=7&x=1".into()
            }
        );
        assert!(out.contains("href=\"https://p.example/prefs\""));
        assert!(out.contains("href=\"mailto:a@e.org\""));
        let text =
            format!("Zie {MARK}https://e.org/p?id=7. Hoi {MARK}Anna, x{MARK}https://e.org/q");
        let out = rw.rewrite_marked_text(&text);
        let signed = s.click_url("cm-1", "https://e.org/p?id=7");
        assert_eq!(out, format!("Zie {signed}. Hoi Anna, xhttps://e.org/q"));
        let unmarked = "<a href=\"https://e.org/\">x</a>".to_owned();
        assert_eq!(rw.rewrite_marked_html(unmarked.clone()), unmarked);
    }

    #[test]
    fn rewrites_anchor_links_but_not_skipped_or_other_schemes() {
        let s = signer();
        let mut rw = Rewriter::new(
            &s,
            "cm-1",
            [
                "https://p.example/prefs",
                "https://p.example/unsub",
                "https://p.example/view",
            ],
        );
        let html = "<a href=\"https://example.org/?a=1&amp;b=2\">x</a>\
                    <a class=\"btn\" href=\"https://p.example/prefs\">p</a>\
                    <a href=\"mailto:info@example.org\">m</a>\
                    <link href=\"https://example.org/style.css\">";
        let out = rw.rewrite_html(html);
        let first = out.split('"').nth(1).unwrap();
        assert_eq!(
            s.verify(token_of(first)).unwrap(),
            TrackedLink::Click {
                tracking_id: "cm-1".into(),
                target: "https://example.org/?a=1&b=2".into()
            }
        );
        assert!(out.contains("href=\"https://p.example/prefs\""));
        assert!(out.contains("href=\"mailto:info@example.org\""));
        assert!(out.contains("<link href=\"https://example.org/style.css\">"));
    }

    #[test]
    fn rewrites_text_urls_once_per_target() {
        let s = signer();
        let mut rw = Rewriter::new(&s, "cm-1", ["https://p.example/prefs", "", ""]);
        let out = rw.rewrite_text("Lees (https://example.org/x). Nogmaals: https://example.org/x\nhttps://p.example/prefs");
        let signed = s.click_url("cm-1", "https://example.org/x");
        assert_eq!(
            out,
            format!("Lees ({signed}). Nogmaals: {signed}\nhttps://p.example/prefs")
        );
        assert_eq!(rw.memo.len(), 1);
    }

    #[test]
    fn unescapes_attribute_entities() {
        assert_eq!(
            unescape_attr("a&amp;b&#x2f;c&#47;d&quot;&bogus"),
            "a&b/c/d\"&bogus"
        );
    }
}
