//! Click and open tracking: signed redirect URLs and link rewriting.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::RenderError;

/// Builds the tracking URLs put in a mail; behind a trait so the key and
/// the URL layout live in one place, shared with the side that verifies.
pub trait LinkSigner: Send + Sync {
    /// A URL that records a click for `tracking_id` and redirects to
    /// `target`, signed for that target alone: used for personalised links,
    /// whose target is only known per recipient.
    fn click_url(&self, tracking_id: &str, target: &str) -> String;
    /// The URL of the open pixel for `tracking_id`.
    fn open_url(&self, tracking_id: &str) -> String;
    /// The tracking URLs of one message from a single signature: the open
    /// pixel, and the prefix that a click on the step's link number `i`
    /// continues with `/{i}` (see `CompiledStep::link_table`).
    fn message_urls(&self, tracking_id: &str) -> MessageUrls;
}

/// One message's tracking URLs, made with one signature per recipient so
/// that tracking costs the same whether a mail has 2 links or 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageUrls {
    /// The open pixel: `{base}/o/{token}`.
    pub open_url: String,
    /// What click URLs start with: `{base}/c/{token}`; a click on link `i`
    /// of the step's link table is `{click_prefix}/{i}`.
    pub click_prefix: String,
}

/// What a verified tracking token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackedLink {
    /// A click: record it for `tracking_id`, then redirect to `target`.
    Click { tracking_id: String, target: String },
    /// An open of the message sent with `tracking_id`.
    Open { tracking_id: String },
}

/// HMAC-SHA256 signer. A token is base64url(payload) `.` base64url(first
/// 16 bytes of the MAC). Each message gets one token, payload
/// `m␟{tracking_id}`: the open pixel is `{base}/o/{token}` and a click on
/// link `i` of the step's link table is `{base}/c/{token}/{i}`. Links whose
/// target is only known per recipient get a token of their own, payload
/// `c␟{tracking_id}␟{target}`: `{base}/c/{token}`, the form every click
/// had before; those and the open tokens of then (`o␟{tracking_id}`) keep
/// verifying, so messages already sent keep working.
#[derive(Clone)]
pub struct HmacLinkSigner {
    base: String,
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for HmacLinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacLinkSigner")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

const MAC_LEN: usize = 16;
const SEP: char = '\u{1f}';
/// Longest link index a click URL may carry (more digits is no link of ours).
const MAX_INDEX_DIGITS: usize = 9;

impl HmacLinkSigner {
    /// A signer for tracking URLs under `base_url` (e.g.
    /// `https://mail.example.org/t`) with a secret `key` (32+ random bytes).
    pub fn new(key: &[u8], base_url: &str) -> Self {
        HmacLinkSigner {
            base: base_url.trim_end_matches('/').to_owned(),
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    fn token(&self, payload: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = String::with_capacity(payload.len() * 4 / 3 + 32);
        URL_SAFE_NO_PAD.encode_string(payload, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&tag[..MAC_LEN], &mut out);
        out
    }

    /// The one token of a message (one HMAC per recipient): its open pixel
    /// is `{base}/o/{token}`, its click on link `i` `{base}/c/{token}/{i}`.
    pub fn message_token(&self, tracking_id: &str) -> String {
        self.token(&format!("m{SEP}{tracking_id}"))
    }

    /// The payload of a token whose MAC checks out.
    fn open(&self, token: &str) -> Result<String, RenderError> {
        let (payload_b64, tag_b64) = token.split_once('.').ok_or(RenderError::InvalidLink)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| RenderError::InvalidLink)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| RenderError::InvalidLink)?;
        if tag.len() != MAC_LEN {
            return Err(RenderError::InvalidLink);
        }
        let mut mac = self.mac.clone();
        mac.update(&payload);
        mac.verify_truncated_left(&tag)
            .map_err(|_| RenderError::InvalidLink)?;
        String::from_utf8(payload).map_err(|_| RenderError::InvalidLink)
    }

    /// Checks a token (the last path segment of a tracking URL) and tells
    /// what it stands for; a changed byte anywhere is refused. A message
    /// token stands for an open here (it is the pixel's token); its clicks
    /// carry a link index and go through [`HmacLinkSigner::verify_click`].
    pub fn verify(&self, token: &str) -> Result<TrackedLink, RenderError> {
        let payload = self.open(token)?;
        let mut parts = payload.splitn(3, SEP);
        match (parts.next(), parts.next(), parts.next()) {
            (Some("c"), Some(id), Some(target)) => Ok(TrackedLink::Click {
                tracking_id: id.to_owned(),
                target: target.to_owned(),
            }),
            (Some("o" | "m"), Some(id), None) => Ok(TrackedLink::Open {
                tracking_id: id.to_owned(),
            }),
            _ => Err(RenderError::InvalidLink),
        }
    }

    /// Checks a click URL of the form `{base}/c/{token}/{index}` (give its
    /// last two path segments) and returns the tracking id and the link
    /// index. The index is not signed: it only picks a link from the step's
    /// own link table, so the caller must look it up there and treat an
    /// index past the end as an invalid link.
    pub fn verify_click(&self, token: &str, index: &str) -> Result<(String, usize), RenderError> {
        let canonical = !index.is_empty()
            && index.len() <= MAX_INDEX_DIGITS
            && index.bytes().all(|b| b.is_ascii_digit())
            && (index == "0" || !index.starts_with('0'));
        if !canonical {
            return Err(RenderError::InvalidLink);
        }
        let index = index.parse().map_err(|_| RenderError::InvalidLink)?;
        let payload = self.open(token)?;
        match payload.split_once(SEP) {
            Some(("m", id)) => Ok((id.to_owned(), index)),
            _ => Err(RenderError::InvalidLink),
        }
    }
}

impl LinkSigner for HmacLinkSigner {
    fn click_url(&self, tracking_id: &str, target: &str) -> String {
        let payload = format!("c{SEP}{tracking_id}{SEP}{target}");
        format!("{}/c/{}", self.base, self.token(&payload))
    }

    fn open_url(&self, tracking_id: &str) -> String {
        format!("{}/o/{}", self.base, self.message_token(tracking_id))
    }

    fn message_urls(&self, tracking_id: &str) -> MessageUrls {
        let token = self.message_token(tracking_id);
        MessageUrls {
            open_url: format!("{}/o/{token}", self.base),
            click_prefix: format!("{}/c/{token}", self.base),
        }
    }
}

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

    fn signer() -> HmacLinkSigner {
        HmacLinkSigner::new(
            b"0123456789abcdef0123456789abcdef",
            "https://t.example.org/t/",
        )
    }

    fn token_of(url: &str) -> &str {
        url.rsplit('/').next().unwrap()
    }

    #[test]
    fn click_url_round_trips() {
        let s = signer();
        let url = s.click_url("cm-42", "https://example.org/a?b=1&c=2");
        assert!(url.starts_with("https://t.example.org/t/c/"), "{url}");
        assert_eq!(
            s.verify(token_of(&url)).unwrap(),
            TrackedLink::Click {
                tracking_id: "cm-42".into(),
                target: "https://example.org/a?b=1&c=2".into()
            }
        );
        let open = s.open_url("cm-42");
        assert!(open.starts_with("https://t.example.org/t/o/"), "{open}");
        assert_eq!(
            s.verify(token_of(&open)).unwrap(),
            TrackedLink::Open {
                tracking_id: "cm-42".into()
            }
        );
    }

    #[test]
    fn message_tokens_open_and_click() {
        let s = signer();
        let token = s.message_token("cm-42");
        let urls = s.message_urls("cm-42");
        assert_eq!(urls.open_url, format!("https://t.example.org/t/o/{token}"));
        assert_eq!(
            urls.click_prefix,
            format!("https://t.example.org/t/c/{token}")
        );
        assert_eq!(s.open_url("cm-42"), urls.open_url);
        // On the pixel's path the token is an open; with an index, a click.
        assert_eq!(
            s.verify(&token),
            Ok(TrackedLink::Open {
                tracking_id: "cm-42".into()
            })
        );
        assert_eq!(s.verify_click(&token, "0"), Ok(("cm-42".into(), 0)));
        assert_eq!(s.verify_click(&token, "17"), Ok(("cm-42".into(), 17)));
        for bad in ["", "01", "+1", "-1", "1x", "1234567890", " 1"] {
            assert_eq!(
                s.verify_click(&token, bad),
                Err(RenderError::InvalidLink),
                "{bad:?}"
            );
        }
        assert_ne!(token, s.message_token("cm-43"));
    }

    #[test]
    fn old_per_link_tokens_still_verify() {
        let s = signer();
        // Tokens as messages sent before per-message tokens carried them.
        let open = s.token(&format!("o{SEP}cm-42"));
        assert_eq!(
            s.verify(&open),
            Ok(TrackedLink::Open {
                tracking_id: "cm-42".into()
            })
        );
        let click = s.token(&format!("c{SEP}cm-42{SEP}https://example.org/x"));
        assert_eq!(
            s.verify(&click),
            Ok(TrackedLink::Click {
                tracking_id: "cm-42".into(),
                target: "https://example.org/x".into()
            })
        );
        // Neither is a message token, so neither takes a link index.
        assert_eq!(s.verify_click(&open, "0"), Err(RenderError::InvalidLink));
        assert_eq!(s.verify_click(&click, "0"), Err(RenderError::InvalidLink));
    }

    #[test]
    fn tampered_message_tokens_are_refused() {
        let s = signer();
        let token = s.message_token("cm-42");
        let (payload, tag) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(format!("m{SEP}cm-43"));
        assert_eq!(
            s.verify_click(&format!("{forged}.{tag}"), "0"),
            Err(RenderError::InvalidLink)
        );
        let mut bad_tag = tag.to_owned();
        bad_tag.replace_range(0..1, if tag.starts_with('A') { "B" } else { "A" });
        assert_eq!(
            s.verify_click(&format!("{payload}.{bad_tag}"), "0"),
            Err(RenderError::InvalidLink)
        );
        let other = HmacLinkSigner::new(b"another key", "https://t.example.org/t");
        assert_eq!(
            other.verify_click(&token, "0"),
            Err(RenderError::InvalidLink)
        );
    }

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
    fn tampered_or_foreign_tokens_are_refused() {
        let s = signer();
        let url = s.click_url("cm-42", "https://example.org/");
        let token = token_of(&url);
        let (payload, tag) = token.split_once('.').unwrap();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(format!("c{SEP}cm-43{SEP}https://evil.example/"));
        assert_eq!(
            s.verify(&format!("{forged_payload}.{tag}")),
            Err(RenderError::InvalidLink)
        );
        let mut bad_tag = tag.to_owned();
        bad_tag.replace_range(0..1, if tag.starts_with('A') { "B" } else { "A" });
        assert_eq!(
            s.verify(&format!("{payload}.{bad_tag}")),
            Err(RenderError::InvalidLink)
        );
        assert_eq!(s.verify(payload), Err(RenderError::InvalidLink));
        let other = HmacLinkSigner::new(b"another key", "https://t.example.org/t");
        assert_eq!(other.verify(token), Err(RenderError::InvalidLink));
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
