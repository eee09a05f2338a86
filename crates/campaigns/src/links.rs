//! Signed recipient links: the preference centre, unsubscribe and view-online URLs in
//! every message, and the click and open tracking URLs. Each names one contact moment
//! (and through it the person and the step) and is signed with HMAC-SHA256 under a key
//! the service keeps (`store::secret`), so a changed byte is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{NaiveDateTime, TimeDelta};
use hmac::{Hmac, Mac};
use mailbaar_render::{HmacLinkSigner, RecipientLinks};
use sha2::Sha256;

/// How long the links in a message work after it was sent (400 days: a member who opens
/// last year's newsletter can still change their preferences).
pub const LINK_LIFETIME_DAYS: i64 = 400;
const MAC_LEN: usize = 16;

/// The page a recipient link opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// `/r/preferences/{token}`: the preference centre.
    Preferences,
    /// `/r/unsubscribe/{token}`: unsubscribe from the step's opt-in type (RFC 8058).
    Unsubscribe,
    /// `/r/view/{token}`: the message as that recipient got it.
    View,
}

impl LinkPurpose {
    fn code(self) -> char {
        match self {
            LinkPurpose::Preferences => 'p',
            LinkPurpose::Unsubscribe => 'u',
            LinkPurpose::View => 'v',
        }
    }

    fn path(self) -> &'static str {
        match self {
            LinkPurpose::Preferences => "preferences",
            LinkPurpose::Unsubscribe => "unsubscribe",
            LinkPurpose::View => "view",
        }
    }
}

/// Why a recipient link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token this service signed (or signed for another page).
    #[error("the link is not valid")]
    Invalid,
    /// A real link whose lifetime has passed.
    #[error("the link has expired")]
    Expired,
}

/// Builds and checks the links of messages: one per service, from the kept key and
/// `MAILBAAR_PUBLIC_URL`.
#[derive(Clone)]
pub struct Links {
    base: String,
    mac: Hmac<Sha256>,
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
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length"),
            tracking: HmacLinkSigner::new(key, &base),
            base,
        }
    }

    /// The click and open tracking signer (`/r/c/…`, `/r/o/…`), the contact moment's id as
    /// the tracking id.
    pub fn tracking(&self) -> &HmacLinkSigner {
        &self.tracking
    }

    /// The token for one page of one contact moment, valid until `expires`.
    pub fn token(
        &self,
        purpose: LinkPurpose,
        contact_moment_id: i64,
        expires: NaiveDateTime,
    ) -> String {
        let payload = format!(
            "{}{contact_moment_id}.{}",
            purpose.code(),
            expires.and_utc().timestamp()
        );
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&tag[..MAC_LEN])
        )
    }

    /// The recipient links of a message sent at `sent_at` for a contact moment.
    pub fn for_moment(&self, contact_moment_id: i64, sent_at: NaiveDateTime) -> RecipientLinks {
        let expires = sent_at + TimeDelta::days(LINK_LIFETIME_DAYS);
        let url = |p: LinkPurpose| {
            format!(
                "{}/{}/{}",
                self.base,
                p.path(),
                self.token(p, contact_moment_id, expires)
            )
        };
        RecipientLinks {
            preferences_url: url(LinkPurpose::Preferences),
            unsubscribe_url: url(LinkPurpose::Unsubscribe),
            view_online_url: url(LinkPurpose::View),
            unsubscribe_mailto: None,
        }
    }

    /// The anti-forgery value of the preference-centre form of one contact moment: only a
    /// page this service rendered holds it (a page elsewhere cannot read it), and it needs
    /// no cookie.
    pub fn form_key(&self, contact_moment_id: i64) -> String {
        let mut mac = self.mac.clone();
        mac.update(format!("form.{contact_moment_id}").as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..MAC_LEN])
    }

    /// Whether `value` is [`Links::form_key`] of the contact moment (constant time).
    pub fn form_key_matches(&self, contact_moment_id: i64, value: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(value) else {
            return false;
        };
        let mut mac = self.mac.clone();
        mac.update(format!("form.{contact_moment_id}").as_bytes());
        tag.len() == MAC_LEN && mac.verify_truncated_left(&tag).is_ok()
    }

    /// Checks a token for `purpose` at `now`: the contact moment it names. Errors:
    /// [`LinkError::Invalid`] for any changed byte or another page's token,
    /// [`LinkError::Expired`] past its lifetime.
    pub fn verify(
        &self,
        purpose: LinkPurpose,
        token: &str,
        now: NaiveDateTime,
    ) -> Result<i64, LinkError> {
        let (payload_b64, tag_b64) = token.split_once('.').ok_or(LinkError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| LinkError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| LinkError::Invalid)?;
        if tag.len() != MAC_LEN {
            return Err(LinkError::Invalid);
        }
        let mut mac = self.mac.clone();
        mac.update(&payload);
        mac.verify_truncated_left(&tag)
            .map_err(|_| LinkError::Invalid)?;
        let payload = String::from_utf8(payload).map_err(|_| LinkError::Invalid)?;
        let rest = payload
            .strip_prefix(purpose.code())
            .ok_or(LinkError::Invalid)?;
        let (id, expires) = rest.split_once('.').ok_or(LinkError::Invalid)?;
        let id: i64 = id.parse().map_err(|_| LinkError::Invalid)?;
        let expires: i64 = expires.parse().map_err(|_| LinkError::Invalid)?;
        if now.and_utc().timestamp() > expires {
            return Err(LinkError::Expired);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(links.verify(LinkPurpose::Preferences, token, sent), Ok(42));
        // Another page's token, a changed byte, another key: refused.
        assert_eq!(
            links.verify(LinkPurpose::Unsubscribe, token, sent),
            Err(LinkError::Invalid)
        );
        let mut changed = token.to_owned().into_bytes();
        changed[1] ^= 1;
        let changed = String::from_utf8(changed).unwrap();
        assert_eq!(
            links.verify(LinkPurpose::Preferences, &changed, sent),
            Err(LinkError::Invalid)
        );
        let other = Links::new(b"another key", "https://mail.example.org");
        assert_eq!(
            other.verify(LinkPurpose::Preferences, token, sent),
            Err(LinkError::Invalid)
        );
        let late = sent + TimeDelta::days(LINK_LIFETIME_DAYS + 1);
        assert_eq!(
            links.verify(LinkPurpose::Preferences, token, late),
            Err(LinkError::Expired)
        );
    }
}
