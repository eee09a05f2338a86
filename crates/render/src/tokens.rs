//! The signed tokens in the URLs of every message: the recipient pages (preference centre,
//! unsubscribe, view online), the open pixel and the click redirects. One format family
//! under one key: a token is base64url(payload) `.` base64url(the first 16 bytes of the
//! payload's HMAC-SHA256), and the payload starts with its [`TokenPurpose`]'s tag. A
//! changed byte anywhere, or a token made for another purpose, is refused; tokens in
//! messages already sent keep verifying.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{NaiveDateTime, TimeDelta};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::RenderError;
use crate::model::RecipientLinks;

/// Bytes of the MAC a token carries (of SHA-256's 32).
const MAC_LEN: usize = 16;
/// Separates the fields of a tracking payload (a character no URL contains).
const SEP: char = '\u{1f}';
/// Longest link index a click URL may carry (more digits is no link of ours).
const MAX_INDEX_DIGITS: usize = 9;

/// How long the page links in a message work after it was sent (400 days: a member who
/// opens last year's newsletter can still change their preferences).
pub const LINK_LIFETIME_DAYS: i64 = 400;

/// What a token is for; its tag opens the signed payload, so a token made for one purpose
/// never passes for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    /// `/r/preferences/{token}`: the preference centre. Payload `p{contact moment}.{expiry}`.
    Preferences,
    /// `/r/unsubscribe/{token}`: unsubscribe from the step's opt-in type (RFC 8058).
    Unsubscribe,
    /// `/r/view/{token}`: the message as that recipient got it.
    View,
    /// One message's open pixel and clicks by link index: payload `m␟{tracking id}`.
    Message,
    /// A click on a personalised link, signed for its target: `c␟{tracking id}␟{target}`.
    Click,
    /// The open pixel of messages sent before message tokens: `o␟{tracking id}`.
    Open,
}

impl TokenPurpose {
    /// The payload's first character.
    fn tag(self) -> char {
        match self {
            TokenPurpose::Preferences => 'p',
            TokenPurpose::Unsubscribe => 'u',
            TokenPurpose::View => 'v',
            TokenPurpose::Message => 'm',
            TokenPurpose::Click => 'c',
            TokenPurpose::Open => 'o',
        }
    }

    /// The path segment of a recipient page under `{public url}/r`; `None` for tracking.
    pub fn page_path(self) -> Option<&'static str> {
        match self {
            TokenPurpose::Preferences => Some("preferences"),
            TokenPurpose::Unsubscribe => Some("unsubscribe"),
            TokenPurpose::View => Some("view"),
            TokenPurpose::Message | TokenPurpose::Click | TokenPurpose::Open => None,
        }
    }

    /// Whether the fields after the tag are separated by `␟` (tracking) rather than
    /// following it directly (pages).
    fn separated(self) -> bool {
        self.page_path().is_none()
    }
}

/// The key every token is signed with, and the one place tokens are made and opened.
#[derive(Clone)]
struct TokenKey {
    mac: Hmac<Sha256>,
}

impl TokenKey {
    fn new(key: &[u8]) -> Self {
        TokenKey {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// The token of `purpose` carrying `fields` after its tag.
    fn seal(&self, purpose: TokenPurpose, fields: &str) -> String {
        let mut payload = String::with_capacity(fields.len() + 2);
        payload.push(purpose.tag());
        if purpose.separated() {
            payload.push(SEP);
        }
        payload.push_str(fields);
        self.seal_payload(&payload)
    }

    fn seal_payload(&self, payload: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = String::with_capacity(payload.len() * 4 / 3 + 32);
        URL_SAFE_NO_PAD.encode_string(payload, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&tag[..MAC_LEN], &mut out);
        out
    }

    /// The purpose and fields of a token whose MAC checks out; `None` for anything else.
    fn open(&self, token: &str) -> Option<(TokenPurpose, String)> {
        let (payload_b64, tag_b64) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).ok()?;
        if tag.len() != MAC_LEN {
            return None;
        }
        let mut mac = self.mac.clone();
        mac.update(&payload);
        mac.verify_truncated_left(&tag).ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let mut chars = payload.chars();
        let purpose = match chars.next()? {
            'p' => TokenPurpose::Preferences,
            'u' => TokenPurpose::Unsubscribe,
            'v' => TokenPurpose::View,
            'm' => TokenPurpose::Message,
            'c' => TokenPurpose::Click,
            'o' => TokenPurpose::Open,
            _ => return None,
        };
        let fields = chars.as_str();
        let fields = if purpose.separated() {
            fields.strip_prefix(SEP)?
        } else {
            fields
        };
        Some((purpose, fields.to_owned()))
    }

    /// A MAC of `text` alone, not a token (the form key of a page).
    fn tag_of(&self, text: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(text.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..MAC_LEN])
    }

    /// Whether `value` is [`TokenKey::tag_of`] `text` (constant time).
    fn tag_matches(&self, text: &str, value: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(value) else {
            return false;
        };
        let mut mac = self.mac.clone();
        mac.update(text.as_bytes());
        tag.len() == MAC_LEN && mac.verify_truncated_left(&tag).is_ok()
    }
}

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

/// The click and open tracking signer. Each message gets one
/// [`TokenPurpose::Message`] token: the open pixel is `{base}/o/{token}` and a click on
/// link `i` of the step's link table is `{base}/c/{token}/{i}`. Links whose target is
/// only known per recipient get a [`TokenPurpose::Click`] token of their own,
/// `{base}/c/{token}`, the form every click had before; those and the
/// [`TokenPurpose::Open`] tokens of then keep verifying, so messages already sent keep
/// working.
#[derive(Clone)]
pub struct HmacLinkSigner {
    base: String,
    key: TokenKey,
}

impl std::fmt::Debug for HmacLinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacLinkSigner")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl HmacLinkSigner {
    /// A signer for tracking URLs under `base_url` (e.g.
    /// `https://mail.example.org/t`) with a secret `key` (32+ random bytes).
    pub fn new(key: &[u8], base_url: &str) -> Self {
        HmacLinkSigner {
            base: base_url.trim_end_matches('/').to_owned(),
            key: TokenKey::new(key),
        }
    }

    /// The one token of a message (one HMAC per recipient): its open pixel
    /// is `{base}/o/{token}`, its click on link `i` `{base}/c/{token}/{i}`.
    pub fn message_token(&self, tracking_id: &str) -> String {
        self.key.seal(TokenPurpose::Message, tracking_id)
    }

    /// Checks a token (the last path segment of a tracking URL) and tells
    /// what it stands for; a changed byte anywhere is refused. A message
    /// token stands for an open here (it is the pixel's token); its clicks
    /// carry a link index and go through [`HmacLinkSigner::verify_click`].
    pub fn verify(&self, token: &str) -> Result<TrackedLink, RenderError> {
        match self.key.open(token).ok_or(RenderError::InvalidLink)? {
            (TokenPurpose::Click, fields) => match fields.split_once(SEP) {
                Some((id, target)) => Ok(TrackedLink::Click {
                    tracking_id: id.to_owned(),
                    target: target.to_owned(),
                }),
                None => Err(RenderError::InvalidLink),
            },
            (TokenPurpose::Open | TokenPurpose::Message, id) if !id.contains(SEP) => {
                Ok(TrackedLink::Open { tracking_id: id })
            }
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
        match self.key.open(token) {
            Some((TokenPurpose::Message, id)) => Ok((id, index)),
            _ => Err(RenderError::InvalidLink),
        }
    }
}

impl LinkSigner for HmacLinkSigner {
    fn click_url(&self, tracking_id: &str, target: &str) -> String {
        let token = self
            .key
            .seal(TokenPurpose::Click, &format!("{tracking_id}{SEP}{target}"));
        format!("{}/c/{token}", self.base)
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

/// Why a recipient page's token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token this service signed (or signed for another page).
    #[error("the link is not valid")]
    Invalid,
    /// A real link whose lifetime has passed.
    #[error("the link has expired")]
    Expired,
}

/// Builds and checks every signed URL of a message: one per service, from the kept key
/// and `MAILBAAR_PUBLIC_URL`. Page tokens name one contact moment (and through it the
/// person and the step) and an expiry; tracking goes through [`Links::tracking`] under
/// the same key.
#[derive(Clone)]
pub struct Links {
    base: String,
    key: TokenKey,
    tracking: HmacLinkSigner,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Links {
    /// Links under `public_url` (e.g. `https://mail.example.org`), signed with `key`.
    pub fn new(key: &[u8], public_url: &str) -> Self {
        let base = format!("{}/r", public_url.trim_end_matches('/'));
        Links {
            key: TokenKey::new(key),
            tracking: HmacLinkSigner::new(key, &base),
            base,
        }
    }

    /// The click and open tracking signer (`/r/c/…`, `/r/o/…`), the contact moment's id as
    /// the tracking id.
    pub fn tracking(&self) -> &HmacLinkSigner {
        &self.tracking
    }

    /// The token for one page of one contact moment, valid until `expires`. A tracking
    /// `purpose` has no page; its token is not one [`Links::verify`] takes.
    pub fn token(
        &self,
        purpose: TokenPurpose,
        contact_moment_id: i64,
        expires: NaiveDateTime,
    ) -> String {
        self.key.seal(
            purpose,
            &format!("{contact_moment_id}.{}", expires.and_utc().timestamp()),
        )
    }

    /// The recipient links of a message sent at `sent_at` for a contact moment.
    pub fn for_moment(&self, contact_moment_id: i64, sent_at: NaiveDateTime) -> RecipientLinks {
        let expires = sent_at + TimeDelta::days(LINK_LIFETIME_DAYS);
        let url = |p: TokenPurpose| {
            format!(
                "{}/{}/{}",
                self.base,
                p.page_path().unwrap_or_default(),
                self.token(p, contact_moment_id, expires)
            )
        };
        RecipientLinks {
            preferences_url: url(TokenPurpose::Preferences),
            unsubscribe_url: url(TokenPurpose::Unsubscribe),
            view_online_url: url(TokenPurpose::View),
            unsubscribe_mailto: None,
        }
    }

    /// The anti-forgery value of the preference-centre form of one contact moment: only a
    /// page this service rendered holds it (a page elsewhere cannot read it), and it needs
    /// no cookie.
    pub fn form_key(&self, contact_moment_id: i64) -> String {
        self.key.tag_of(&format!("form.{contact_moment_id}"))
    }

    /// Whether `value` is [`Links::form_key`] of the contact moment (constant time).
    pub fn form_key_matches(&self, contact_moment_id: i64, value: &str) -> bool {
        self.key
            .tag_matches(&format!("form.{contact_moment_id}"), value)
    }

    /// Checks a page token for `purpose` at `now`: the contact moment it names. Errors:
    /// [`LinkError::Invalid`] for any changed byte or another purpose's token,
    /// [`LinkError::Expired`] past its lifetime.
    pub fn verify(
        &self,
        purpose: TokenPurpose,
        token: &str,
        now: NaiveDateTime,
    ) -> Result<i64, LinkError> {
        let (found, fields) = self.key.open(token).ok_or(LinkError::Invalid)?;
        if found != purpose || purpose.page_path().is_none() {
            return Err(LinkError::Invalid);
        }
        let (id, expires) = fields.split_once('.').ok_or(LinkError::Invalid)?;
        let id: i64 = id.parse().map_err(|_| LinkError::Invalid)?;
        let expires: i64 = expires.parse().map_err(|_| LinkError::Invalid)?;
        if now.and_utc().timestamp() > expires {
            return Err(LinkError::Expired);
        }
        Ok(id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tracking signer under a fixed test key.
    pub(crate) fn signer() -> HmacLinkSigner {
        HmacLinkSigner::new(
            b"0123456789abcdef0123456789abcdef",
            "https://t.example.org/t/",
        )
    }

    /// The token of a tracking URL: its last path segment.
    pub(crate) fn token_of(url: &str) -> &str {
        url.rsplit('/').next().unwrap()
    }

    #[test]
    fn links_verify_and_refuse_changes() {
        let links = Links::new(
            b"0123456789abcdef0123456789abcdef",
            "https://mail.example.org/",
        );
        let sent = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc();
        let set = links.for_moment(42, sent);
        assert!(set
            .preferences_url
            .starts_with("https://mail.example.org/r/preferences/"));
        let token = set.preferences_url.rsplit('/').next().unwrap();
        assert_eq!(links.verify(TokenPurpose::Preferences, token, sent), Ok(42));
        // Another page's token, a changed byte, another key: refused.
        assert_eq!(
            links.verify(TokenPurpose::Unsubscribe, token, sent),
            Err(LinkError::Invalid)
        );
        let mut changed = token.to_owned().into_bytes();
        changed[1] ^= 1;
        let changed = String::from_utf8(changed).unwrap();
        assert_eq!(
            links.verify(TokenPurpose::Preferences, &changed, sent),
            Err(LinkError::Invalid)
        );
        let other = Links::new(b"another key", "https://mail.example.org");
        assert_eq!(
            other.verify(TokenPurpose::Preferences, token, sent),
            Err(LinkError::Invalid)
        );
        let late = sent + TimeDelta::days(LINK_LIFETIME_DAYS + 1);
        assert_eq!(
            links.verify(TokenPurpose::Preferences, token, late),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn page_tokens_keep_their_wire_format() {
        // A preference-centre token as messages already sent carry it.
        let key = b"0123456789abcdef0123456789abcdef";
        let links = Links::new(key, "https://mail.example.org");
        let expires = chrono::DateTime::from_timestamp(1_834_560_000, 0)
            .unwrap()
            .naive_utc();
        let token = links.token(TokenPurpose::Preferences, 42, expires);
        let (payload, _) = token.split_once('.').unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(payload).unwrap(),
            b"p42.1834560000".to_vec()
        );
        // A tracking token is no page token, and a page token no tracking token.
        let message = links.tracking().message_token("42");
        assert_eq!(
            links.verify(TokenPurpose::Preferences, &message, expires),
            Err(LinkError::Invalid)
        );
        assert_eq!(
            links.tracking().verify(&token),
            Err(RenderError::InvalidLink)
        );
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
        let open = s.key.seal(TokenPurpose::Open, "cm-42");
        assert_eq!(
            s.verify(&open),
            Ok(TrackedLink::Open {
                tracking_id: "cm-42".into()
            })
        );
        let click = s.key.seal(
            TokenPurpose::Click,
            &format!("cm-42{SEP}https://example.org/x"),
        );
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
}
