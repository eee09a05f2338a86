//! Click tracking prepared once per step: the links of a template whose
//! target is the same for every recipient are replaced, at compile time, by
//! `{{ __click }}/N` (`__click_html` in HTML), where `__click` is the
//! message's click prefix (one signature per recipient) and `N` the
//! target's place in the step's link table. Links whose target is
//! personalised are marked ([`MARK`]) so that only they are found and
//! signed after rendering; so is every expression of a text body that could
//! print a URL.
//!
//! A URL counts as the same for every recipient when it is literal or uses
//! nothing but `step.*` (evaluated here). A template whose links cannot be
//! found reliably in its source (`raw` or `filter` blocks, link text inside
//! template tags) is left as it is and tracked after rendering, as a whole.

use std::fmt::Write as _;

use crate::compile::LINK_VARIABLES;
use crate::protect::{scan_tags, Tag, TagKind};
use crate::tracking::{is_trackable, starts_with_url, unescape_attr, url_len, MARK};

/// The variable holding the message's click prefix (`{base}/c/{token}`)
/// in the text body.
pub(crate) const CLICK_VAR: &str = "__click";
/// The same prefix for the HTML body, attribute-escaped once per message
/// (and so marked safe: escaping it at each of its uses costs more).
pub(crate) const CLICK_HTML_VAR: &str = "__click_html";

/// What a rendered part still needs for click tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterRender {
    /// Nothing: every link was rewritten in the template.
    Nothing,
    /// The marked (personalised) links are signed one by one.
    Marked,
    /// The template could not be rewritten: every link is signed one by one.
    Everything,
}

/// The deduplicated targets of a step's tracked links, in order of first
/// appearance (HTML, then text).
#[derive(Debug, Default)]
pub(crate) struct LinkTable {
    pub targets: Vec<String>,
}

impl LinkTable {
    fn index_of(&mut self, target: &str) -> usize {
        match self.targets.iter().position(|t| t == target) {
            Some(i) => i,
            None => {
                self.targets.push(target.to_owned());
                self.targets.len() - 1
            }
        }
    }

    fn click(&mut self, out: &mut String, var: &str, target: &str) {
        let i = self.index_of(target);
        let _ = write!(out, "{{{{ {var} }}}}/{i}");
    }
}

/// Renders a piece of template that may only use `step.*`; `None` when it
/// uses anything else or fails.
pub(crate) type StepEval<'a> = dyn Fn(&str) -> Option<String> + 'a;

fn end(tag: &Tag<'_>) -> usize {
    tag.start + tag.src.len()
}

/// The inside of a tag without delimiters and whitespace control.
fn inner<'s>(tag: &Tag<'s>) -> &'s str {
    let s = tag.src.get(2..).unwrap_or("");
    // A tag left open (inside `raw`, say) runs to the end of the source.
    let s = ["}}", "%}", "#}"]
        .iter()
        .find_map(|close| s.strip_suffix(close))
        .unwrap_or(s);
    s.trim_matches(|c: char| c == '-' || c == '+' || c == '~' || c.is_whitespace())
}

fn keyword<'s>(tag: &Tag<'s>) -> &'s str {
    let s = inner(tag);
    &s[..s
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(s.len())]
}

/// Whether `word` occurs in `s` as an identifier.
fn has_ident(s: &str, word: &str) -> bool {
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    s.match_indices(word).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| s.as_bytes()[i]);
        let after = s.as_bytes().get(at + word.len()).copied();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// A template this module would misread: output changed by a block
/// (`raw`, `filter`), link text inside tags (`needle`), or our mark.
fn must_track_after_render(src: &str, tags: &[Tag<'_>], needle: &str) -> bool {
    src.contains(MARK)
        || tags.iter().any(|t| {
            (t.kind == TagKind::Stmt && matches!(keyword(t), "raw" | "filter"))
                || (t.kind != TagKind::Comment && t.src.to_ascii_lowercase().contains(needle))
        })
}

/// Whether some statement rebinds `step`, so `step.*` in a link may not be
/// the step's own fields there.
fn step_rebound(tags: &[Tag<'_>]) -> bool {
    tags.iter().any(|t| {
        t.kind == TagKind::Stmt
            && matches!(keyword(t), "set" | "for" | "with" | "macro" | "call")
            && has_ident(inner(t), "step")
    })
}

/// `{{ preferences_url }}` and its kind: a recipient link, never tracked.
fn is_link_variable(tag: &Tag<'_>) -> bool {
    tag.kind == TagKind::Expr && LINK_VARIABLES.contains(&inner(tag))
}

struct Source<'s> {
    src: &'s str,
    tags: Vec<Tag<'s>>,
}

impl<'s> Source<'s> {
    /// The tag that `pos` lies in, if any.
    fn tag_at(&self, pos: usize) -> Option<&Tag<'s>> {
        let i = self.tags.partition_point(|t| t.start <= pos);
        i.checked_sub(1)
            .map(|i| &self.tags[i])
            .filter(|t| pos < end(t))
    }

    /// The first `needle` at or after `from` that is not inside a tag.
    fn find_outside(&self, mut from: usize, needle: &str) -> Option<usize> {
        loop {
            let at = from + self.src.get(from..)?.find(needle)?;
            match self.tag_at(at) {
                Some(tag) => from = end(tag),
                None => return Some(at),
            }
        }
    }

    /// The last `<` before `pos` that is not inside a tag.
    fn rfind_lt_outside(&self, mut pos: usize) -> Option<usize> {
        loop {
            let at = self.src[..pos].rfind('<')?;
            match self.tag_at(at) {
                Some(tag) => pos = tag.start,
                None => return Some(at),
            }
        }
    }

    fn tags_in(&self, from: usize, to: usize) -> &[Tag<'s>] {
        let a = self.tags.partition_point(|t| t.start < from);
        let b = self.tags.partition_point(|t| t.start < to);
        &self.tags[a..b]
    }

    /// Whether the `href` at `at` belongs to an `<a>` or `<area>` element.
    fn in_anchor(&self, at: usize) -> bool {
        let Some(lt) = self.rfind_lt_outside(at) else {
            return false;
        };
        let name = &self.src.as_bytes()[lt + 1..];
        let tag_is = |n: &[u8]| {
            name.len() > n.len()
                && name[..n.len()].eq_ignore_ascii_case(n)
                && (name[n.len()].is_ascii_whitespace() || name[n.len()] == b'{')
        };
        tag_is(b"a") || tag_is(b"area")
    }
}

/// Rewrites the `href`s of `<a>` and `<area>` in an HTML template (after CSS
/// inlining, so values are serialized as `href="..."` with entities).
pub(crate) fn rewrite_html(
    src: &str,
    eval: &StepEval<'_>,
    table: &mut LinkTable,
) -> (String, AfterRender) {
    let source = Source {
        src,
        tags: scan_tags(src),
    };
    if must_track_after_render(src, &source.tags, "href") {
        return (src.to_owned(), AfterRender::Everything);
    }
    let may_eval = !step_rebound(&source.tags);
    let mut out = String::with_capacity(src.len() + 256);
    let mut copied = 0;
    let mut marked = false;
    let mut from = 0;
    while let Some(at) = source.find_outside(from, "href=\"") {
        let value_start = at + 6;
        let Some(value_end) = source.find_outside(value_start, "\"") else {
            break;
        };
        from = value_end + 1;
        if !source.in_anchor(at) {
            continue;
        }
        let value = &src[value_start..value_end];
        let tags = source.tags_in(value_start, value_end);
        let target = if tags.is_empty() {
            Some(unescape_attr(value).into_owned())
        } else if tags.len() == 1 && is_link_variable(&tags[0]) && tags[0].src == value {
            continue;
        } else if may_eval && !value.contains('\n') && tags.iter().all(|t| t.kind != TagKind::Stmt)
        {
            eval(value).map(|rendered| unescape_attr(&rendered).into_owned())
        } else {
            None
        };
        out.push_str(&src[copied..value_start]);
        match target {
            Some(target) if !value.contains('\n') => {
                if is_trackable(&target, &[]) {
                    table.click(&mut out, CLICK_HTML_VAR, &target);
                } else {
                    out.push_str(value);
                }
                copied = value_end;
            }
            _ => {
                out.push(MARK);
                marked = true;
                copied = value_start;
            }
        }
    }
    out.push_str(&src[copied..]);
    let after = if marked {
        AfterRender::Marked
    } else {
        AfterRender::Nothing
    };
    (out, after)
}

/// Where a URL that starts in a text template ends, and whether its target
/// is the same for every recipient.
struct Run {
    end: usize,
    has_tags: bool,
    personal: bool,
}

/// Follows the URL at `at` through the source as a text body would, over
/// the expressions inside it (their output continues the URL).
fn url_run(source: &Source<'_>, at: usize) -> Run {
    let src = source.src;
    let mut j = at;
    let mut has_tags = false;
    // Which text follows a statement depends on the recipient; the URL is
    // still followed to its end in the source, so no mark lands inside it.
    let mut personal = false;
    loop {
        let next_tag = source.tags_in(j, src.len()).first();
        let text_end = next_tag.map_or(src.len(), |t| t.start);
        let stop = src[j..text_end]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | ')' | ']'))
            .map(|p| j + p);
        if let Some(stop) = stop {
            // A following `{{-` eats the white space and so continues the URL.
            let gap_end = src[stop..text_end]
                .find(|c: char| !c.is_whitespace())
                .map_or(text_end, |p| stop + p);
            let eaten = gap_end == text_end
                && next_tag.is_some_and(|t| t.src.as_bytes().get(2) == Some(&b'-'));
            return Run {
                end: stop,
                has_tags,
                personal: personal || eaten,
            };
        }
        let Some(tag) = next_tag else {
            return Run {
                end: src.len(),
                has_tags,
                personal,
            };
        };
        has_tags = true;
        personal |= tag.kind == TagKind::Stmt;
        j = end(tag);
    }
}

/// Rewrites the `http(s)://` URLs of a text template, and marks where an
/// expression's output could start a URL.
pub(crate) fn rewrite_text(
    src: &str,
    eval: &StepEval<'_>,
    table: &mut LinkTable,
) -> (String, AfterRender) {
    let source = Source {
        src,
        tags: scan_tags(src),
    };
    if must_track_after_render(src, &source.tags, "http") {
        return (src.to_owned(), AfterRender::Everything);
    }
    let may_eval = !step_rebound(&source.tags);
    let mut out = String::with_capacity(src.len() + 256);
    let mut copied = 0;
    let mut marked = false;
    let mut mark = |out: &mut String, copied: &mut usize, at: usize| {
        out.push_str(&src[*copied..at]);
        out.push(MARK);
        *copied = at;
        marked = true;
    };
    // Whether the text before `at` allows a URL to start there; `None`
    // when a tag's output comes right before it.
    let boundary = |at: usize| -> Option<bool> {
        if at == 0 {
            return Some(true);
        }
        if source.tag_at(at - 1).is_some() {
            return None;
        }
        Some(!src.as_bytes()[at - 1].is_ascii_alphanumeric())
    };
    let mut i = 0;
    let mut tag_i = 0;
    while i < src.len() {
        while tag_i < source.tags.len() && source.tags[tag_i].start < i {
            tag_i += 1;
        }
        let next_tag = source.tags.get(tag_i);
        let text_end = next_tag.map_or(src.len(), |t| t.start);
        if i == text_end {
            let tag = next_tag.expect("a tag starts here");
            if tag.kind == TagKind::Expr && !is_link_variable(tag) {
                // A `{{-` eats the white space before it: mark before that.
                let mut at = i;
                if tag.src.as_bytes().get(2) == Some(&b'-') {
                    let text_start = tag_i.checked_sub(1).map_or(0, |p| end(&source.tags[p]));
                    at = src[..i].trim_end().len().max(text_start).max(copied);
                }
                if boundary(at) != Some(false) {
                    mark(&mut out, &mut copied, at);
                }
            }
            i = end(tag);
            continue;
        }
        let Some(offset) = src[i..text_end].find("http") else {
            i = text_end;
            continue;
        };
        let at = i + offset;
        let is_url = starts_with_url(&src[at..text_end]);
        match boundary(at) {
            _ if !is_url => {
                i = at + 4;
                continue;
            }
            Some(false) => {
                i = at + 4;
                continue;
            }
            None => {
                mark(&mut out, &mut copied, at);
                i = url_run(&source, at).end.max(at + 4);
                continue;
            }
            Some(true) => {}
        }
        let run = url_run(&source, at);
        i = run.end.max(at + 4);
        let span = &src[at..run.end];
        if run.personal || (run.has_tags && (!may_eval || span.contains('\n'))) {
            mark(&mut out, &mut copied, at);
            continue;
        }
        if !run.has_tags {
            let len = url_len(span);
            out.push_str(&src[copied..at]);
            table.click(&mut out, CLICK_VAR, &span[..len]);
            copied = at + len;
            continue;
        }
        match eval(span) {
            Some(rendered) if !rendered[url_len(&rendered)..].contains(['{', '}']) => {
                let len = url_len(&rendered);
                out.push_str(&src[copied..at]);
                table.click(&mut out, CLICK_VAR, &rendered[..len]);
                out.push_str(&rendered[len..]);
                copied = run.end;
            }
            _ => mark(&mut out, &mut copied, at),
        }
    }
    out.push_str(&src[copied..]);
    let after = if marked {
        AfterRender::Marked
    } else {
        AfterRender::Nothing
    };
    (out, after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_only(s: &str) -> Option<String> {
        // Stands in for the compiler's evaluation: `{{ step.name }}` is "Okt".
        (!s.contains("person")).then(|| s.replace("{{ step.name }}", "Okt"))
    }

    fn html(src: &str) -> (String, AfterRender, Vec<String>) {
        let mut table = LinkTable::default();
        let (out, after) = rewrite_html(src, &step_only, &mut table);
        (out, after, table.targets)
    }

    fn text(src: &str) -> (String, AfterRender, Vec<String>) {
        let mut table = LinkTable::default();
        let (out, after) = rewrite_text(src, &step_only, &mut table);
        (out, after, table.targets)
    }

    #[test]
    fn static_html_links_become_table_entries() {
        let (out, after, table) = html(
            "<a href=\"https://e.org/?a=1&amp;b=2\">x</a><a class=\"b\" href=\"https://e.org/?a=1&amp;b=2\">y</a>\
             <a href=\"mailto:x@e.org\">m</a><link href=\"https://e.org/s.css\"><a href=\"#top\">t</a>\
             <area shape=\"rect\" href=\"https://e.org/{{ step.name }}\">",
        );
        assert_eq!(
            out,
            "<a href=\"{{ __click_html }}/0\">x</a><a class=\"b\" href=\"{{ __click_html }}/0\">y</a>\
             <a href=\"mailto:x@e.org\">m</a><link href=\"https://e.org/s.css\"><a href=\"#top\">t</a>\
             <area shape=\"rect\" href=\"{{ __click_html }}/1\">"
        );
        assert_eq!(after, AfterRender::Nothing);
        assert_eq!(table, ["https://e.org/?a=1&b=2", "https://e.org/Okt"]);
    }

    #[test]
    fn personalised_and_recipient_links_in_html() {
        let (out, after, table) = html(
            "<a href=\"{{ preferences_url }}\">p</a>\
             <a href=\"https://e.org/p?id={{ person.id }}\">x</a>\
             <a title=\"{{ \"a\\\"b\" }}\" href=\"{% if x %}https://a{% endif %}\">y</a>",
        );
        assert_eq!(
            out,
            "<a href=\"{{ preferences_url }}\">p</a>\
             <a href=\"\u{E010}https://e.org/p?id={{ person.id }}\">x</a>\
             <a title=\"{{ \"a\\\"b\" }}\" href=\"\u{E010}{% if x %}https://a{% endif %}\">y</a>"
        );
        assert_eq!(after, AfterRender::Marked);
        assert!(table.is_empty());
    }

    #[test]
    fn html_that_cannot_be_read_is_tracked_after_render() {
        for src in [
            "{% raw %}<a href=\"https://e.org\">x</a>{% endraw %}",
            "{% filter upper %}<a href=\"https://e.org\">x</a>{% endfilter %}",
            "{{ '<a href=\"https://e.org\">x</a>' | safe }}",
        ] {
            let (out, after, table) = html(src);
            assert_eq!((out.as_str(), after), (src, AfterRender::Everything));
            assert!(table.is_empty());
        }
        let (_, after, _) =
            html("{% for step in steps %}<a href=\"https://e/{{ step.name }}\">{% endfor %}");
        assert_eq!(after, AfterRender::Marked);
    }

    #[test]
    fn static_text_urls_become_table_entries() {
        let (out, after, table) = text(
            "Lees (https://e.org/x). Nogmaals: https://e.org/x\nZie https://e.org/{{ step.name }}, \
             en ({{ preferences_url }})",
        );
        assert_eq!(
            out,
            "Lees ({{ __click }}/0). Nogmaals: {{ __click }}/0\nZie {{ __click }}/1, \
             en ({{ preferences_url }})"
        );
        assert_eq!(after, AfterRender::Nothing);
        assert_eq!(table, ["https://e.org/x", "https://e.org/Okt"]);
    }

    #[test]
    fn personalised_text_urls_and_expressions_are_marked() {
        let (out, after, table) = text(
            "A https://e.org/p?id={{ person.id }} B {{ person.site }} C x{{ person.y }} \
             D https://e.org/{% if a %}b{% endif %}/{{ person.z }} E https://e.org/q {{- person.w }}",
        );
        assert_eq!(
            out,
            "A \u{E010}https://e.org/p?id={{ person.id }} B \u{E010}{{ person.site }} C x{{ person.y }} \
             D \u{E010}https://e.org/{% if a %}b{% endif %}/{{ person.z }} E \u{E010}https://e.org/q {{- person.w }}"
        );
        assert_eq!(after, AfterRender::Marked);
        assert!(table.is_empty());
        let (out, after, _) = text("Zie http://e.org{{ \"https\" }}");
        assert_eq!(
            (out.as_str(), after),
            ("Zie http://e.org{{ \"https\" }}", AfterRender::Everything)
        );
    }

    #[test]
    fn tags_left_open_do_not_trip_the_reader() {
        for src in [
            "{% raw %}{{é{% endraw %}x\u{e9}",
            "{% raw %}{{ {% endraw %}é",
            "a {{",
        ] {
            let (_, after, _) = text(src);
            assert_ne!(after, AfterRender::Nothing, "{src}");
            let _ = html(src);
        }
    }

    #[test]
    fn has_ident_is_whole_words() {
        assert!(has_ident("for step in x", "step"));
        assert!(!has_ident("set steps = 1", "step"));
        assert!(!has_ident("if my_step", "step"));
    }
}
