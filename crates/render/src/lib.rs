//! Mail rendering for Mailbaar: templates with personalisation and block
//! personalisation, previews, click/open tracking and standards-correct
//! MIME messages. Takes plain data; needs no database.
//!
//! Compile a [`Step`] once with [`CompiledStep::compile`] (templates parsed
//! and checked, CSS inlined, text body derived, tracked links rewritten),
//! then call [`CompiledStep::render`] per [`Recipient`].
//!
//! Click and open tracking signs once per message: the pixel is
//! `{base}/o/{token}` and a click on link `i` of
//! [`CompiledStep::link_table`] is `{base}/c/{token}/{i}` (check it with
//! [`HmacLinkSigner::verify_click`]). Links whose target is personalised
//! get a signed URL of their own, `{base}/c/{token}` (checked with
//! [`HmacLinkSigner::verify`], as are the per-link URLs of older messages).
//! [`CompiledStep::with_dkim`] adds a DKIM signature to every message.
//! [`Links`] signs and checks every token of a message (the recipient pages
//! and tracking) under one key, the purpose in [`TokenPurpose`].
//!
//! Templates are MiniJinja, strict about undefined variables. They see
//! `person.FIELD`, `step.FIELD` (see [`STEP_FIELDS`]), `blocks.NAME` (true
//! when the recipient matches that block) and the links in
//! [`LINK_VARIABLES`]. Extra filters: `default("x")` for missing or blank
//! values, `date_nl` / `date_en` (styles `long`, `full`, `short`) and a
//! name-aware `title`.

mod compile;
mod error;
mod filters;
mod links;
mod mime;
mod model;
mod protect;
mod text;
mod tokens;
mod tracking;

pub use compile::{
    validate, CompiledStep, ReadinessIssue, RenderedMail, LINK_VARIABLES, STEP_FIELDS,
};
pub use error::{RenderError, TemplatePart};
pub use model::{Block, Envelope, PersonValue, PersonVars, Recipient, RecipientLinks, Step};
pub use tokens::{
    HmacLinkSigner, LinkError, LinkSigner, Links, MessageUrls, TokenPurpose, TrackedLink,
    LINK_LIFETIME_DAYS,
};
