//! Compile a step once (parse, check, inline CSS, derive the text body),
//! then render it per recipient cheaply.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use lettre::message::dkim::DkimConfig;
use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::error::{RenderError, TemplatePart};
use crate::filters;
use crate::links::{self, AfterRender, LinkTable, CLICK_HTML_VAR, CLICK_VAR};
use crate::mime::{self, Parts, Sender};
use crate::model::{PersonValue, Recipient, Step};
use crate::protect::{protect, scan_tags, Mode, TagKind};
use crate::text;
use crate::tokens::LinkSigner;
use crate::tracking::{Rewriter, MARK};

/// The links every recipient has, available as top-level variables.
pub const LINK_VARIABLES: [&str; 3] = ["preferences_url", "unsubscribe_url", "view_online_url"];

/// The step fields templates may use as `step.NAME`.
pub const STEP_FIELDS: [&str; 6] = [
    "name",
    "subject",
    "preheader",
    "from_name",
    "from_email",
    "reply_to",
];

/// Upper bound on template work per render, so no template can loop for ever.
const FUEL: u64 = 500_000;

const SUBJECT: &str = "subject.txt";
const PREHEADER: &str = "preheader.txt";
const HTML: &str = "body.html";
const TEXT: &str = "body.txt";

/// Hidden first text of the body; the filler keeps inboxes from pulling
/// body text into the preview after a short pre-header.
const PREHEADER_OPEN: &str = "<div style=\"display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all\">";
const PREHEADER_FILLER: &str = "&zwnj;&nbsp;";
const PIXEL: &str = "{% if __open_url %}<img src=\"{{ __open_url }}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;width:1px;height:1px;border:0\">{% endif %}";

/// Why a step may not be sent yet, for the step's readiness report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReadinessIssue {
    /// The body does not link the preference centre (`{{ preferences_url }}`).
    MissingPreferencesLink { part: TemplatePart },
}

/// A step parsed, checked and prepared for mail clients; render it for any
/// number of recipients.
#[derive(Debug)]
pub struct CompiledStep {
    link_table: Vec<String>,
    html_after: AfterRender,
    text_after: AfterRender,
    dkim: Option<Dkim>,
    env: Environment<'static>,
    has_preheader: bool,
    track_clicks: bool,
    track_opens: bool,
    sender: Sender,
    step_value: Value,
    block_names: Vec<String>,
    /// Person fields the templates read; `None` when they read `person` whole.
    person_fields: Option<Vec<String>>,
    readiness: Vec<ReadinessIssue>,
    inlined_html: String,
    text_template: String,
}

/// The DKIM key of a step's sending domain; its `Debug` shows no key.
#[derive(Clone)]
struct Dkim(Arc<DkimConfig>);

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dkim(..)")
    }
}

/// What a recipient gets: the rendered parts and the complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    /// The subject line.
    pub subject: String,
    /// The pre-header text (also the hidden first text of `html`).
    pub preheader: String,
    /// The HTML body as sent (CSS inlined, links rewritten, pixel added).
    pub html: String,
    /// The plain-text body as sent.
    pub text: String,
    /// The RFC 5322 message, CRLF line ends, ready for SMTP.
    pub message: Vec<u8>,
}

/// HTML-escapes `s` into `out`; the tracking mark becomes its (equivalent)
/// character reference, so no person value can pose as a link to track.
fn escape_into<W: std::fmt::Write>(out: &mut W, s: &str) -> std::fmt::Result {
    let bytes = s.as_bytes();
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (rep, len) = match bytes[i] {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'\'' => ("&#39;", 1),
            0xEE if s[i..].starts_with(MARK) => ("&#xE010;", MARK.len_utf8()),
            _ => {
                i += 1;
                continue;
            }
        };
        out.write_str(&s[last..i])?;
        out.write_str(rep)?;
        i += len;
        last = i;
    }
    out.write_str(&s[last..])
}

fn escape_html(out: &mut minijinja::Output<'_>, s: &str) -> std::fmt::Result {
    escape_into(out, s)
}

/// `s` escaped for an HTML attribute value, appended to `out`.
fn attr_escape_into(out: &mut String, s: &str) {
    let _ = escape_into(out, s);
}

/// Writes a value that holds the tracking mark with the mark neutralised
/// (HTML: as a character reference, text: dropped); `false` when the value
/// holds none and is to be written as usual.
fn write_without_mark(
    out: &mut minijinja::Output<'_>,
    value: &Value,
    html: bool,
) -> Result<bool, minijinja::Error> {
    let owned;
    let s = match value.as_str() {
        Some(s) => s,
        None if matches!(
            value.kind(),
            ValueKind::Undefined | ValueKind::None | ValueKind::Bool | ValueKind::Number
        ) =>
        {
            return Ok(false)
        }
        None => {
            owned = value.to_string();
            &owned
        }
    };
    if !s.contains(MARK) {
        return Ok(false);
    }
    if html && !value.is_safe() {
        escape_html(out, s)?;
    } else {
        out.write_str(&s.replace(MARK, if html { "&#xE010;" } else { "" }))?;
    }
    Ok(true)
}

/// The environment of one step; `tracking` when its templates carry
/// tracking marks, which person values then may not.
fn environment(tracking: bool) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.add_filter("default", filters::default);
    env.add_filter("date_nl", filters::date_nl);
    env.add_filter("date_en", filters::date_en);
    env.add_filter("title", filters::title);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // None prints as nothing; HTML escaping leaves `/` alone so URLs stay
    // readable (and comparable) in attributes.
    env.set_formatter(move |out, state, value| {
        if value.is_none() {
            return Ok(());
        }
        let html = matches!(state.auto_escape(), AutoEscape::Html);
        if html && !value.is_safe() {
            if let Some(s) = value.as_str() {
                return escape_html(out, s).map_err(minijinja::Error::from);
            }
        }
        if tracking && write_without_mark(out, value, html)? {
            return Ok(());
        }
        minijinja::escape_formatter(out, state, value)
    });
    env
}

/// The line of the first tag in `src` that mentions `name`.
fn line_of_variable(src: &str, name: &str) -> usize {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let leaf = name.rsplit('.').next().unwrap_or(name);
    for needle in [name, leaf] {
        for tag in scan_tags(src).iter().filter(|t| t.kind != TagKind::Comment) {
            let mut from = 0;
            while let Some(at) = tag.src[from..].find(needle) {
                let start = from + at;
                let end = start + needle.len();
                let before_ok = tag.src[..start]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !is_ident(c));
                let after_ok = tag.src[end..].chars().next().is_none_or(|c| !is_ident(c));
                if before_ok && after_ok {
                    return tag.line;
                }
                from = end;
            }
        }
    }
    1
}

struct Known<'a> {
    person_fields: &'a BTreeSet<&'a str>,
    blocks: &'a BTreeSet<&'a str>,
}

/// Adds one template and checks every variable it reads.
fn add_checked(
    env: &mut Environment<'static>,
    name: &'static str,
    part: TemplatePart,
    source: &str,
    known: &Known<'_>,
) -> Result<BTreeSet<String>, RenderError> {
    env.add_template_owned(name, source.to_owned())
        .map_err(|e| RenderError::from_minijinja(part, &e, true))?;
    let tmpl = env
        .get_template(name)
        .map_err(|e| RenderError::from_minijinja(part, &e, true))?;
    let used: BTreeSet<String> = tmpl.undeclared_variables(true).into_iter().collect();
    let globals: BTreeSet<String> = env.globals().map(|(n, _)| n.to_owned()).collect();
    let mut problems = Vec::new();
    for var in &used {
        let (root, field) = match var.split_once('.') {
            Some((r, f)) => (r, Some(f)),
            None => (var.as_str(), None),
        };
        let ok = match (root, field) {
            ("person", None) | ("step", None) | ("blocks", None) => true,
            ("person", Some(f)) => known.person_fields.contains(f),
            ("step", Some(f)) => STEP_FIELDS.contains(&f),
            ("blocks", Some(b)) => {
                if !known.blocks.contains(b) {
                    problems.push(RenderError::UnknownBlock {
                        part,
                        line: line_of_variable(source, var),
                        name: b.to_owned(),
                    });
                }
                true
            }
            (r, _) => LINK_VARIABLES.contains(&r) || globals.contains(r),
        };
        if !ok {
            problems.push(RenderError::UnknownVariable {
                part,
                line: line_of_variable(source, var),
                name: var.clone(),
            });
        }
    }
    // Report the first problem in reading order.
    match problems.into_iter().min_by_key(|p| p.line()) {
        Some(problem) => Err(problem),
        None => Ok(used),
    }
}

/// Inlines `<style>` rules into the HTML template, keeping template tags.
fn inline_css(html: &str) -> Result<String, RenderError> {
    let protected = protect(html, Mode::Css);
    let inliner = css_inline::CSSInliner::options()
        .keep_at_rules(true)
        .load_remote_stylesheets(false)
        .build();
    let inlined = inliner
        .inline(&protected.pieces[0])
        .map_err(|e| RenderError::Prepare {
            part: TemplatePart::Html,
            reason: e.to_string(),
        })?;
    protected.restore(&inlined, TemplatePart::Html)
}

/// Puts the pre-header slot after `<body ...>` and the pixel slot before
/// `</body>` of an inlined template (the inliner always writes both).
fn add_slots(inlined: &str, preheader: bool) -> String {
    let mut out = String::with_capacity(inlined.len() + 1024);
    let body_open = inlined
        .find("<body")
        .and_then(|at| inlined[at..].find('>').map(|end| at + end + 1))
        .unwrap_or(0);
    let body_close = inlined.rfind("</body>").unwrap_or(inlined.len());
    let body_close = body_close.max(body_open);
    out.push_str(&inlined[..body_open]);
    if preheader {
        out.push_str(PREHEADER_OPEN);
        out.push_str("{{ __preheader }}");
        for _ in 0..40 {
            out.push_str(PREHEADER_FILLER);
        }
        out.push_str("</div>");
    }
    out.push_str(&inlined[body_open..body_close]);
    out.push_str(PIXEL);
    out.push_str(&inlined[body_close..]);
    out
}

fn person_value(v: &PersonValue) -> Value {
    match v {
        PersonValue::Null => Value::from(()),
        PersonValue::Bool(b) => Value::from(*b),
        PersonValue::Integer(i) => Value::from(*i),
        PersonValue::Date(d) => Value::from(d.format("%Y-%m-%d").to_string()),
        PersonValue::Text(s) => Value::from(s.as_str()),
    }
}

/// Subject and pre-header are single lines.
fn one_line(s: String) -> String {
    if s.contains(['\r', '\n'])
        || s.starts_with(char::is_whitespace)
        || s.ends_with(char::is_whitespace)
    {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        s
    }
}

fn is_local_http(url: &str) -> bool {
    ["http://localhost", "http://127.0.0.1", "http://[::1]"]
        .iter()
        .any(|p| {
            url.starts_with(p) && matches!(url.as_bytes().get(p.len()), None | Some(b':' | b'/'))
        })
}

fn list_unsubscribe(recipient: &Recipient) -> Result<String, RenderError> {
    let https = recipient.links.unsubscribe_url.trim();
    if !(https.starts_with("https://") || is_local_http(https)) {
        return Err(RenderError::Address {
            field: "unsubscribe url",
            reason: "List-Unsubscribe one-click needs an https URL (RFC 8058)".to_owned(),
        });
    }
    let mut value = String::with_capacity(https.len() + 64);
    let _ = write!(value, "<{https}>");
    if let Some(mailto) = recipient
        .links
        .unsubscribe_mailto
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        if !mailto.starts_with("mailto:") {
            return Err(RenderError::Address {
                field: "unsubscribe mailto",
                reason: format!("`{mailto}` is not a mailto: URL"),
            });
        }
        let _ = write!(value, ", <{mailto}>");
    }
    Ok(value)
}

impl CompiledStep {
    /// Parses and checks every template of `step` (unknown variables and
    /// blocks are refused with their line), inlines its CSS and derives its
    /// text body. `person_fields` names the person fields templates may use.
    /// This is the check to run when a step is saved.
    pub fn compile<S: AsRef<str>>(step: &Step, person_fields: &[S]) -> Result<Self, RenderError> {
        let sender = Sender::parse(&step.from_name, &step.from_email, step.reply_to.as_deref())?;
        let person_set: BTreeSet<&str> = person_fields.iter().map(AsRef::as_ref).collect();
        let mut block_names = Vec::new();
        for block in &step.blocks {
            if block.name.is_empty()
                || !block
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                || block.name.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(RenderError::Prepare {
                    part: TemplatePart::Html,
                    reason: format!("block name `{}` must be letters, digits and _", block.name),
                });
            }
            block_names.push(block.name.clone());
        }
        let block_set: BTreeSet<&str> = block_names.iter().map(String::as_str).collect();
        let known = Known {
            person_fields: &person_set,
            blocks: &block_set,
        };

        let mut env = environment(step.track_clicks);
        let mut used = BTreeSet::new();
        used.extend(add_checked(
            &mut env,
            SUBJECT,
            TemplatePart::Subject,
            &step.subject,
            &known,
        )?);
        used.extend(add_checked(
            &mut env,
            PREHEADER,
            TemplatePart::Preheader,
            &step.preheader,
            &known,
        )?);
        let html_used = add_checked(&mut env, HTML, TemplatePart::Html, &step.html, &known)?;
        used.extend(html_used.iter().cloned());
        let mut readiness = Vec::new();
        if !html_used.contains("preferences_url") {
            readiness.push(ReadinessIssue::MissingPreferencesLink {
                part: TemplatePart::Html,
            });
        }

        let text_template = match &step.text {
            Some(text) if !text.trim().is_empty() => {
                let text_used = add_checked(&mut env, TEXT, TemplatePart::Text, text, &known)?;
                if !text_used.contains("preferences_url") {
                    readiness.push(ReadinessIssue::MissingPreferencesLink {
                        part: TemplatePart::Text,
                    });
                }
                used.extend(text_used);
                text.clone()
            }
            _ => {
                let generated = text::text_template_from_html(&step.html)?;
                env.template_from_str(&generated)
                    .map_err(|e| RenderError::Prepare {
                        part: TemplatePart::Text,
                        reason: format!("the text generated from the HTML does not parse ({e}); give a text body"),
                    })?;
                generated
            }
        };

        let has_preheader = !step.preheader.trim().is_empty();
        let mut inlined_html = add_slots(&inline_css(&step.html)?, has_preheader);

        let step_value = Value::from(BTreeMap::from([
            ("name", Value::from(step.name.as_str())),
            ("subject", Value::from(step.subject.as_str())),
            ("preheader", Value::from(step.preheader.as_str())),
            ("from_name", Value::from(step.from_name.as_str())),
            ("from_email", Value::from(step.from_email.as_str())),
            (
                "reply_to",
                step.reply_to
                    .as_deref()
                    .map_or(Value::from(()), Value::from),
            ),
        ]));

        let mut table = LinkTable::default();
        let mut html_after = AfterRender::Nothing;
        let mut text_after = AfterRender::Nothing;
        let mut text_template = text::strip_line_ends(&text_template);
        if step.track_clicks {
            // Evaluates a link that only uses `step.*`, as it renders in `name`.
            let eval_as = |name: &'static str| {
                let (env, step_value) = (&env, &step_value);
                move |snippet: &str| -> Option<String> {
                    let tmpl = env.template_from_named_str(name, snippet).ok()?;
                    let step_only = tmpl
                        .undeclared_variables(true)
                        .iter()
                        .all(|v| v == "step" || v.starts_with("step."));
                    step_only
                        .then(|| {
                            let ctx = BTreeMap::from([("step", step_value.clone())]);
                            tmpl.render(Value::from(ctx)).ok()
                        })
                        .flatten()
                }
            };
            (inlined_html, html_after) =
                links::rewrite_html(&inlined_html, &eval_as("link.html"), &mut table);
            (text_template, text_after) =
                links::rewrite_text(&text_template, &eval_as("link.txt"), &mut table);
        }
        env.add_template_owned(HTML, inlined_html.clone())
            .map_err(|e| RenderError::Prepare {
                part: TemplatePart::Html,
                reason: format!("after CSS inlining: {e}"),
            })?;
        env.add_template_owned(TEXT, text_template.clone())
            .map_err(|e| RenderError::Prepare {
                part: TemplatePart::Text,
                reason: format!("the text body does not parse ({e}); give a text body"),
            })?;

        let person_fields = if used.contains("person") {
            None
        } else {
            Some(
                used.iter()
                    .filter_map(|v| v.strip_prefix("person."))
                    .map(str::to_owned)
                    .collect(),
            )
        };

        Ok(CompiledStep {
            link_table: table.targets,
            html_after,
            text_after,
            dkim: None,
            env,
            has_preheader,
            track_clicks: step.track_clicks,
            track_opens: step.track_opens,
            sender,
            step_value,
            block_names,
            person_fields,
            readiness,
            inlined_html,
            text_template,
        })
    }

    /// Signs every message of this step with DKIM (RFC 6376) for the
    /// sending domain, so receivers can tell the mail really comes from it.
    /// One config serves any number of steps.
    pub fn with_dkim(mut self, dkim: Arc<DkimConfig>) -> Self {
        self.dkim = Some(Dkim(dkim));
        self
    }

    /// The targets of the links that are tracked through the message's
    /// token: a click URL `{base}/c/{token}/{i}` redirects to entry `i`.
    /// The click endpoint looks the index up here (an index past the end is
    /// an invalid link), so keep this table with the messages sent from it.
    pub fn link_table(&self) -> &[String] {
        &self.link_table
    }

    /// Why this step may not be sent yet (empty when it may).
    pub fn readiness(&self) -> &[ReadinessIssue] {
        &self.readiness
    }

    /// The HTML template after CSS inlining (and, with click tracking, link
    /// rewriting), for inspection and debugging.
    pub fn html_template(&self) -> &str {
        &self.inlined_html
    }

    /// The text template (given, or generated from the HTML; with click
    /// tracking, links rewritten).
    pub fn text_template(&self) -> &str {
        &self.text_template
    }

    fn render_part(
        &self,
        name: &str,
        part: TemplatePart,
        ctx: &Value,
    ) -> Result<String, RenderError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| RenderError::from_minijinja(part, &e, false))
    }

    fn context(&self, recipient: &Recipient) -> BTreeMap<&'static str, Value> {
        let mut person: BTreeMap<String, Value> = BTreeMap::new();
        match &self.person_fields {
            Some(fields) => {
                for f in fields {
                    let v = recipient
                        .person
                        .get(f)
                        .map_or(Value::from(()), person_value);
                    person.insert(f.clone(), v);
                }
            }
            None => {
                for (k, v) in &recipient.person {
                    person.insert(k.clone(), person_value(v));
                }
            }
        }
        let blocks: BTreeMap<String, bool> = self
            .block_names
            .iter()
            .map(|b| (b.clone(), recipient.blocks.contains(b)))
            .collect();
        let links = &recipient.links;
        BTreeMap::from([
            ("person", Value::from(person)),
            ("step", self.step_value.clone()),
            ("blocks", Value::from(blocks)),
            (
                "preferences_url",
                Value::from(links.preferences_url.as_str()),
            ),
            (
                "unsubscribe_url",
                Value::from(links.unsubscribe_url.as_str()),
            ),
            (
                "view_online_url",
                Value::from(links.view_online_url.as_str()),
            ),
        ])
    }

    /// Renders the complete message for one recipient: personalisation,
    /// blocks, pre-header, tracking, text part, headers and MIME.
    pub fn render(
        &self,
        recipient: &Recipient,
        envelope: &crate::Envelope,
        signer: &dyn LinkSigner,
    ) -> Result<RenderedMail, RenderError> {
        let to = mime::mailbox(
            recipient.name.as_deref(),
            &recipient.email,
            "recipient address",
        )?;
        let list_unsubscribe = list_unsubscribe(recipient)?;
        let mut vars = self.context(recipient);
        let ctx = Value::from(vars.clone());
        let subject = one_line(self.render_part(SUBJECT, TemplatePart::Subject, &ctx)?);
        let preheader = if self.has_preheader {
            one_line(self.render_part(PREHEADER, TemplatePart::Preheader, &ctx)?)
        } else {
            String::new()
        };
        vars.insert("__preheader", Value::from(preheader.as_str()));
        let urls = (self.track_opens || self.track_clicks)
            .then(|| signer.message_urls(&recipient.tracking_id));
        let (open_url, click_prefix) = urls.map_or((None, None), |u| {
            (
                self.track_opens.then_some(u.open_url),
                self.track_clicks.then_some(u.click_prefix),
            )
        });
        vars.insert("__open_url", Value::from(open_url));
        let click_html = click_prefix.as_deref().map_or(Value::from(()), |prefix| {
            let mut escaped = String::with_capacity(prefix.len() + 16);
            attr_escape_into(&mut escaped, prefix);
            Value::from_safe_string(escaped)
        });
        vars.insert(CLICK_HTML_VAR, click_html);
        vars.insert(CLICK_VAR, Value::from(click_prefix));
        let ctx = Value::from(vars);
        let mut html = self.render_part(HTML, TemplatePart::Html, &ctx)?;
        let mut text = self.render_part(TEXT, TemplatePart::Text, &ctx)?;
        if self.html_after != AfterRender::Nothing || self.text_after != AfterRender::Nothing {
            let links = &recipient.links;
            let mut rewriter = Rewriter::new(
                signer,
                &recipient.tracking_id,
                [
                    links.preferences_url.as_str(),
                    links.unsubscribe_url.as_str(),
                    links.view_online_url.as_str(),
                ],
            );
            match self.html_after {
                AfterRender::Nothing => {}
                AfterRender::Marked => html = rewriter.rewrite_marked_html(html),
                AfterRender::Everything => html = rewriter.rewrite_html(&html),
            }
            match self.text_after {
                AfterRender::Nothing => {}
                AfterRender::Marked => text = rewriter.rewrite_marked_text(&text),
                AfterRender::Everything => text = rewriter.rewrite_text(&text),
            }
        }
        let text = text::tidy(&text);
        let message = mime::assemble(
            &self.sender,
            envelope,
            Parts {
                to,
                subject: &subject,
                html: &html,
                text: &text,
                list_unsubscribe,
            },
            self.dkim.as_ref().map(|d| &*d.0),
        )?;
        Ok(RenderedMail {
            subject,
            preheader,
            html,
            text,
            message,
        })
    }

    /// Renders the mail for one chosen person exactly as the real send
    /// would (same code path), so what an editor previews is what is sent.
    pub fn preview(
        &self,
        recipient: &Recipient,
        envelope: &crate::Envelope,
        signer: &dyn LinkSigner,
    ) -> Result<RenderedMail, RenderError> {
        self.render(recipient, envelope, signer)
    }
}

/// Checks a step on save: `Ok` when it compiles, else the first problem
/// with its template part and line.
pub fn validate<S: AsRef<str>>(step: &Step, person_fields: &[S]) -> Result<(), RenderError> {
    CompiledStep::compile(step, person_fields).map(|_| ())
}
