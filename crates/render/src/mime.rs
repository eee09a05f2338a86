//! MIME assembly: our own fast quoted-printable encoding and multipart
//! body, written once into one buffer; lettre writes the headers (and signs
//! with DKIM). lettre's own encoder costs ~150 µs a message.

use std::io::Write as _;
use std::time::SystemTime;

use lettre::message::dkim::DkimConfig;
use lettre::message::header::{self, ContentTransferEncoding, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox};
use lettre::Message;
use sha2::{Digest, Sha256};

use crate::error::RenderError;
use crate::model::Envelope;

const LINE: usize = 75; // 76 minus the soft-break `=`
const HEX: &[u8; 16] = b"0123456789ABCDEF";
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Flags (bit 7 of each byte) the bytes of `v` that cannot stand as
/// themselves in a quoted-printable line: controls (also `\n`), `=`, DEL
/// and non-ASCII. Only the lowest flag is exact (borrows run upwards), which
/// is all the encoder needs.
#[inline]
fn unsafe_mask(v: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    (v & HIGH)
        | (v.wrapping_sub(0x20 * ONES) & !v & HIGH)
        | zero(v ^ (0x3D * ONES))
        | zero(v ^ (0x7F * ONES))
}

#[inline]
fn byte_is_literal(b: u8, at_line_start: bool, at_line_end: bool) -> bool {
    match b {
        b' ' | b'\t' => !at_line_end,
        // A dot at the start of a line is escaped so no transport can take
        // it for the end of the data.
        b'.' => !at_line_start,
        b'=' => false,
        33..=126 => true,
        _ => false,
    }
}

#[inline]
fn ends_line(src: &[u8], j: usize) -> bool {
    match src.get(j) {
        None | Some(b'\n') => true,
        Some(b'\r') => src.get(j + 1) == Some(&b'\n'),
        _ => false,
    }
}

/// Quoted-printable (RFC 2045) with CRLF line ends; any `\n` or `\r\n` of
/// the input is a hard line break. Literal runs are found 8 bytes at a time
/// and copied in one go; only the bytes that need care take the slow path.
#[cfg(test)]
pub(crate) fn quoted_printable(input: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 4 + 64);
    quoted_printable_into(input, &mut out);
    out
}

/// The first byte at or after `k` that cannot stand as itself (see
/// [`unsafe_mask`]), 8 bytes at a time; `src.len()` when there is none.
#[inline]
fn next_unsafe(src: &[u8], mut k: usize) -> usize {
    // Two words per step: one branch for 16 bytes.
    while k + 16 <= src.len() {
        let a = unsafe_mask(u64::from_le_bytes(
            src[k..k + 8].try_into().expect("8 bytes"),
        ));
        let b = unsafe_mask(u64::from_le_bytes(
            src[k + 8..k + 16].try_into().expect("8 bytes"),
        ));
        if a | b != 0 {
            return if a != 0 {
                k + (a.trailing_zeros() / 8) as usize
            } else {
                k + 8 + (b.trailing_zeros() / 8) as usize
            };
        }
        k += 16;
    }
    while k + 8 <= src.len() {
        let v = u64::from_le_bytes(src[k..k + 8].try_into().expect("8 bytes"));
        let mask = unsafe_mask(v);
        if mask != 0 {
            return k + (mask.trailing_zeros() / 8) as usize;
        }
        k += 8;
    }
    while k < src.len() && matches!(src[k], b' ' | 33..=60 | 62..=126) {
        k += 1;
    }
    k
}

/// [`quoted_printable`], appended to `out`. The next byte that needs care
/// is found once and remembered across soft line breaks, so every byte is
/// looked at about once.
pub(crate) fn quoted_printable_into(input: &str, out: &mut Vec<u8>) {
    let src = input.as_bytes();
    let n = src.len();
    out.reserve(n + n / 16 + 16);
    let mut col = 0usize;
    let mut i = 0usize;
    let mut next = 0usize;
    while i < n {
        if next < i {
            next = next_unsafe(src, i);
        }
        let mut k = (next - i).min(LINE.saturating_sub(col));
        if col == 0 && k > 0 && src[i] == b'.' {
            k = 0;
        }
        // A space that ends a line must be encoded: leave it to the slow path.
        if k > 0 && src[i + k - 1] == b' ' && ends_line(src, i + k) {
            k -= 1;
        }
        if k > 0 {
            out.extend_from_slice(&src[i..i + k]);
            col += k;
            i += k;
            if i != next || i == n {
                continue;
            }
        }
        let b = src[i];
        // The common cases first: a line end (a space before it has been
        // encoded already), or an `=` that fits the line.
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += 1;
            continue;
        }
        if b == b'=' && col + 3 <= LINE {
            out.extend_from_slice(b"=3D");
            col += 3;
            i += 1;
            continue;
        }
        if b == b'\n' || (b == b'\r' && src.get(i + 1) == Some(&b'\n')) {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        let at_line_end = ends_line(src, i + 1);
        let literal = byte_is_literal(b, col == 0, at_line_end);
        let need = if literal { 1 } else { 3 };
        // Keep room for the `=` of a soft break unless this ends the line.
        let limit = if at_line_end { LINE + 1 } else { LINE };
        if col + need > limit {
            out.extend_from_slice(b"=\r\n");
            col = 0;
            continue; // re-check: a dot may now start the line
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
        col += need;
        i += 1;
    }
}

/// Sender and reply-to, parsed once per step.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
}

impl Sender {
    pub(crate) fn parse(
        from_name: &str,
        from_email: &str,
        reply_to: Option<&str>,
    ) -> Result<Self, RenderError> {
        if from_email.trim().is_empty() {
            return Err(RenderError::Missing("sender address"));
        }
        let from = mailbox(Some(from_name), from_email, "sender address")?;
        let reply_to = reply_to
            .filter(|r| !r.trim().is_empty())
            .map(|r| mailbox(None, r, "reply-to address"))
            .transpose()?;
        Ok(Sender { from, reply_to })
    }
}

pub(crate) fn mailbox(
    name: Option<&str>,
    email: &str,
    field: &'static str,
) -> Result<Mailbox, RenderError> {
    let address = email.trim().parse().map_err(|e| RenderError::Address {
        field,
        reason: format!("`{email}`: {e}"),
    })?;
    let name = name
        .map(|n| n.replace(['\r', '\n'], " ").trim().to_owned())
        .filter(|n| !n.is_empty());
    Ok(Mailbox::new(name, address))
}

/// The parts of one message, ready to assemble.
pub(crate) struct Parts<'a> {
    pub to: Mailbox,
    pub subject: &'a str,
    pub html: &'a str,
    pub text: &'a str,
    pub list_unsubscribe: String,
}

const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");

/// `<id@domain>` from an id given with or without brackets.
fn bracketed(id: &str) -> String {
    let id = id.trim();
    if id.starts_with('<') && id.ends_with('>') {
        id.to_owned()
    } else {
        format!("<{id}>")
    }
}

/// A boundary derived from the Message-ID (so output is reproducible);
/// `=_` can never occur in quoted-printable text.
fn boundary(message_id: &str) -> String {
    let digest = Sha256::digest(message_id.as_bytes());
    let mut b = String::from("=_mb_");
    for byte in &digest[..12] {
        b.push(HEX[(byte >> 4) as usize] as char);
        b.push(HEX[(byte & 15) as usize] as char);
    }
    b
}

const CONTENT_TYPE: HeaderName = HeaderName::new_from_ascii_str("Content-Type");

/// Writes the multipart/alternative body into `out`: the text part, then
/// the HTML part (the last part is the preferred one), both
/// quoted-printable.
fn multipart_body_into(out: &mut Vec<u8>, boundary: &str, text: &str, html: &str) {
    const PART_HEAD: &[u8] = b"Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    // Quoted-printable grows a mail body by some 5-10%.
    out.reserve((text.len() + html.len()) * 9 / 8 + 4 * boundary.len() + 256);
    for (content_type, body) in [
        ("text/plain; charset=utf-8", text),
        ("text/html; charset=utf-8", html),
    ] {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(PART_HEAD);
        quoted_printable_into(body, out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
}

/// Assembles a multipart/alternative message, signs it when `dkim` is
/// given, and returns its bytes.
pub(crate) fn assemble(
    sender: &Sender,
    envelope: &Envelope,
    parts: Parts<'_>,
    dkim: Option<&DkimConfig>,
) -> Result<Vec<u8>, RenderError> {
    let message_id = bracketed(&envelope.message_id);
    if message_id.len() < 5 || !message_id.contains('@') {
        return Err(RenderError::Address {
            field: "message id",
            reason: format!("`{}` is not id@domain", envelope.message_id),
        });
    }
    let boundary = boundary(&message_id);
    // A message to be signed carries its body (DKIM hashes it); otherwise the
    // body is written straight after the headers, saving a copy of it.
    let body = match dkim {
        Some(_) => {
            let mut body = Vec::new();
            multipart_body_into(&mut body, &boundary, parts.text, parts.html);
            body
        }
        None => Vec::new(),
    };
    // Given, so lettre need not parse the addresses back out of the headers.
    let smtp_envelope = lettre::address::Envelope::new(
        Some(sender.from.email.clone()),
        vec![parts.to.email.clone()],
    )
    .map_err(|e| RenderError::Address {
        field: "message",
        reason: e.to_string(),
    })?;
    let mut builder = Message::builder()
        .envelope(smtp_envelope)
        .from(sender.from.clone())
        .to(parts.to)
        .subject(parts.subject)
        .date(SystemTime::from(envelope.date))
        .message_id(Some(message_id))
        .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE, parts.list_unsubscribe))
        .raw_header(HeaderValue::new(
            LIST_UNSUBSCRIBE_POST,
            "List-Unsubscribe=One-Click".to_owned(),
        ));
    if let Some(reply_to) = &sender.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    let mut message = builder
        .header(header::MIME_VERSION_1_0)
        .raw_header(HeaderValue::dangerous_new_pre_encoded(
            CONTENT_TYPE,
            format!("multipart/alternative; boundary=\"{boundary}\""),
            format!("multipart/alternative;\r\n boundary=\"{boundary}\""),
        ))
        .body(Body::dangerous_pre_encoded(
            body,
            ContentTransferEncoding::SevenBit,
        ))
        .map_err(|e| RenderError::Address {
            field: "message",
            reason: e.to_string(),
        })?;
    // A multipart body is 7bit by definition (RFC 2045); no header needed.
    message.headers_mut().remove::<ContentTransferEncoding>();
    match dkim {
        Some(dkim) => {
            message.sign(dkim);
            Ok(message.formatted())
        }
        None => {
            // What `formatted()` writes: the headers, an empty line, the body.
            let mut out = Vec::with_capacity((parts.text.len() + parts.html.len()) * 9 / 8 + 4096);
            write!(out, "{}\r\n", message.headers()).expect("writing to a Vec cannot fail");
            multipart_body_into(&mut out, &boundary, parts.text, parts.html);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(qp: &[u8]) -> String {
        let text = std::str::from_utf8(qp).unwrap();
        let mut bytes = Vec::new();
        let joined = text.replace("=\r\n", "");
        let b = joined.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' {
                bytes.push(u8::from_str_radix(&joined[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                bytes.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(bytes).unwrap().replace("\r\n", "\n")
    }

    #[test]
    fn quoted_printable_round_trips_and_keeps_lines_short() {
        let input = "Hallo Anna, één café = 3 € \n.dot at start\r\n".to_owned()
            + &"<td style=\"color:#333;padding:0\">lange regel met tekst</td> ".repeat(20)
            + "\ntrailing tab\t\nend";
        let qp = quoted_printable(&input);
        let text = std::str::from_utf8(&qp).unwrap();
        for line in text.split("\r\n") {
            assert!(line.len() <= 76, "line too long: {line:?}");
            assert!(!line.starts_with('.'), "dot-started line: {line:?}");
            assert!(!line.ends_with(' ') && !line.ends_with('\t'), "{line:?}");
            assert!(line.is_ascii());
        }
        assert!(!text.contains('\n') || text.matches('\n').count() == text.matches("\r\n").count());
        assert_eq!(decode(&qp), input.replace("\r\n", "\n"));
    }

    /// Checks the rules every encoded body must keep.
    fn check_lines(qp: &[u8], input: &str) {
        let text = std::str::from_utf8(qp).unwrap();
        for line in text.split("\r\n") {
            assert!(line.len() <= 76, "line too long: {line:?} of {input:?}");
            assert!(!line.starts_with('.'), "dot-started line: {line:?}");
            assert!(!line.ends_with([' ', '\t']), "{line:?} of {input:?}");
            assert!(line.is_ascii());
        }
        assert_eq!(decode(qp), input.replace("\r\n", "\n"), "{input:?}");
    }

    #[test]
    fn quoted_printable_keeps_the_rules_on_any_input() {
        // Lines of spaces, dots, `=`, non-ASCII, tabs and CR/LF, around the
        // 75-column limit.
        let alphabet: Vec<char> = " .=a\tb\r\n\u{e9}x\u{20ac}  ".chars().collect();
        let mut seed = 12345u64;
        for _ in 0..5000 {
            let mut input = String::new();
            for _ in 0..seed % 200 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                if (seed >> 20) % 7 == 3 {
                    input.extend(std::iter::repeat_n('a', ((seed >> 40) % 90) as usize));
                }
                input.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            check_lines(&quoted_printable(&input), &input);
        }
    }

    #[test]
    fn chunk_mask_finds_the_first_unsafe_byte() {
        for b in 0u8..=255 {
            for pos in 0..8 {
                let mut bytes = *b"abcdefgh";
                bytes[pos] = b;
                // Unsafe bytes after it must not hide it.
                if pos < 7 {
                    bytes[7] = 0xFF;
                }
                let mask = unsafe_mask(u64::from_le_bytes(bytes));
                let literal = b == b' ' || (b != b'=' && (33..=126).contains(&b));
                let first = if mask == 0 {
                    8
                } else {
                    mask.trailing_zeros() as usize / 8
                };
                let expected = if literal {
                    if pos < 7 {
                        7
                    } else {
                        8
                    }
                } else {
                    pos
                };
                assert_eq!(first, expected, "byte {b} at {pos}");
            }
        }
    }

    #[test]
    fn boundary_cannot_occur_in_quoted_printable() {
        let b = boundary("<x@example.org>");
        assert!(b.starts_with("=_"));
        assert_eq!(b, boundary("<x@example.org>"));
        assert_ne!(b, boundary("<y@example.org>"));
    }
}
