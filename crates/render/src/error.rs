//! The one error type of the render crate.

use std::fmt;

/// Which template of a step an error belongs to, so a message can point the
/// editor at the right field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplatePart {
    /// The subject line.
    Subject,
    /// The pre-header (the preview text mail clients show after the subject).
    Preheader,
    /// The HTML body.
    Html,
    /// The plain-text body (given, or generated from the HTML).
    Text,
}

impl fmt::Display for TemplatePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TemplatePart::Subject => "subject",
            TemplatePart::Preheader => "preheader",
            TemplatePart::Html => "html",
            TemplatePart::Text => "text",
        })
    }
}

/// Everything that can go wrong while checking, compiling or rendering a
/// step, or verifying a tracking link. Template errors carry the part and
/// the 1-based line so the API can show "line 12: unknown variable".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    /// The template does not parse.
    #[error("{part} line {line}: syntax error: {reason}")]
    Syntax {
        part: TemplatePart,
        line: usize,
        reason: String,
    },
    /// The template uses a variable that no recipient will ever have.
    #[error("{part} line {line}: unknown variable `{name}`")]
    UnknownVariable {
        part: TemplatePart,
        line: usize,
        name: String,
    },
    /// The template refers to a block the step does not define.
    #[error("{part} line {line}: unknown block `{name}`")]
    UnknownBlock {
        part: TemplatePart,
        line: usize,
        name: String,
    },
    /// Rendering failed for this recipient (a bad date, a missing value the
    /// template needs, ...).
    #[error("{part} line {line}: {reason}")]
    Render {
        part: TemplatePart,
        line: usize,
        reason: String,
    },
    /// The step's content could not be prepared for mail clients (CSS
    /// inlining or text generation lost a template tag).
    #[error("{part}: cannot prepare the body: {reason}")]
    Prepare { part: TemplatePart, reason: String },
    /// A sender, reply-to or recipient address or name is not usable.
    #[error("invalid {field}: {reason}")]
    Address { field: &'static str, reason: String },
    /// The step or recipient lacks something the message needs.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A tracking link was malformed or its signature did not match.
    #[error("invalid tracking link")]
    InvalidLink,
}

impl RenderError {
    /// The 1-based line a template error points at, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            RenderError::Syntax { line, .. }
            | RenderError::UnknownVariable { line, .. }
            | RenderError::UnknownBlock { line, .. }
            | RenderError::Render { line, .. } => Some(*line),
            _ => None,
        }
    }

    pub(crate) fn from_minijinja(part: TemplatePart, err: &minijinja::Error, syntax: bool) -> Self {
        let line = err.line().unwrap_or(1);
        let reason = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        if syntax {
            RenderError::Syntax { part, line, reason }
        } else {
            RenderError::Render { part, line, reason }
        }
    }
}
