//! The recipient side under `/r/`: the pages a member of the public reaches from a
//! message. Server-rendered HTML that needs no JavaScript, in the organisation's language;
//! errors are friendly HTML pages (never problem documents), and a link that does not
//! verify records nothing.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use mailbaar_delivery::TrackedLink;
use mailbaar_delivery::{LinkRefusal, Reached, TokenPurpose as LinkPurpose, Unsubscribed};
use mailbaar_settings::Language;
use minijinja::{context, Environment};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// A transparent 1×1 GIF: the open pixel.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Pages only load what they carry; links in them leak no token to other sites.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template("page.html", include_str!("../../assets/pages/page.html"))
            .expect("the page template parses");
        env
    })
}

/// The words of the pages, per language.
struct Words {
    lang: &'static str,
    invalid_title: &'static str,
    invalid: &'static str,
    expired_title: &'static str,
    expired: &'static str,
    failed_title: &'static str,
    failed: &'static str,
    preferences_title: &'static str,
    hello: &'static str,
    intro: &'static str,
    legend: &'static str,
    save: &'static str,
    unsubscribe_all: &'static str,
    unsubscribe_all_label: &'static str,
    saved_title: &'static str,
    saved: &'static str,
    unchanged: &'static str,
    everything_withdrawn: &'static str,
    nothing_personal: &'static str,
    unsubscribe_title: &'static str,
    unsubscribe_question: &'static str,
    unsubscribe_question_all: &'static str,
    confirm: &'static str,
    unsubscribed_title: &'static str,
    unsubscribed: &'static str,
    unsubscribed_all: &'static str,
    already: &'static str,
    unsubscribe_label: &'static str,
    to_preferences: &'static str,
    form_expired: &'static str,
    view_gone: &'static str,
    use_button: &'static str,
}

const NL: Words = Words {
    lang: "nl",
    invalid_title: "Deze link werkt niet",
    invalid: "De link is niet (meer) geldig. Gebruik de link uit de e-mail zoals u die ontving.",
    expired_title: "Deze link is verlopen",
    expired:
        "Deze link is te oud. Gebruik de link in een recentere e-mail, of neem contact met ons op.",
    failed_title: "Er ging iets mis",
    failed: "Uw keuze is niet opgeslagen. Probeer het over een paar minuten opnieuw.",
    preferences_title: "Uw voorkeuren",
    hello: "Beste",
    intro: "Kies hieronder welke berichten u van ons wilt ontvangen.",
    legend: "Ik ontvang graag:",
    save: "Voorkeuren opslaan",
    unsubscribe_all: "Afmelden voor alles",
    unsubscribe_all_label: "Afmelden voor alles (voorkeurencentrum)",
    saved_title: "Uw voorkeuren zijn opgeslagen",
    saved: "Dank u wel. Wij hebben uw keuzes vastgelegd.",
    unchanged: "Er is niets veranderd: uw keuzes waren al zo.",
    everything_withdrawn: "U bent afgemeld voor alle berichten.",
    nothing_personal: "Voor dit adres zijn geen gegevens meer bekend.",
    unsubscribe_title: "Afmelden",
    unsubscribe_question: "Wilt u zich afmelden voor",
    unsubscribe_question_all: "Wilt u zich afmelden voor al onze berichten?",
    confirm: "Ja, meld mij af",
    unsubscribed_title: "U bent afgemeld",
    unsubscribed: "U ontvangt geen berichten meer van",
    unsubscribed_all: "U ontvangt geen berichten meer van ons.",
    already: "U was hiervoor al afgemeld.",
    unsubscribe_label: "Afgemeld via de link in de e-mail",
    to_preferences: "Naar uw voorkeuren",
    form_expired: "Dit formulier is niet geldig. Open de link uit de e-mail opnieuw.",
    view_gone: "Dit bericht is niet meer beschikbaar.",
    use_button: "Gebruik de knop op de afmeldpagina om u af te melden.",
};

const EN: Words = Words {
    lang: "en",
    invalid_title: "This link does not work",
    invalid: "The link is not valid. Use the link from the e-mail as you received it.",
    expired_title: "This link has expired",
    expired: "This link is too old. Use the link in a more recent e-mail, or contact us.",
    failed_title: "Something went wrong",
    failed: "Your choice was not saved. Please try again in a few minutes.",
    preferences_title: "Your preferences",
    hello: "Dear",
    intro: "Choose below which messages you would like to receive from us.",
    legend: "I would like to receive:",
    save: "Save preferences",
    unsubscribe_all: "Unsubscribe from everything",
    unsubscribe_all_label: "Unsubscribe from everything (preference centre)",
    saved_title: "Your preferences are saved",
    saved: "Thank you. We have recorded your choices.",
    unchanged: "Nothing changed: your choices were already so.",
    everything_withdrawn: "You are unsubscribed from all messages.",
    nothing_personal: "No details are known for this address any more.",
    unsubscribe_title: "Unsubscribe",
    unsubscribe_question: "Do you want to unsubscribe from",
    unsubscribe_question_all: "Do you want to unsubscribe from all our messages?",
    confirm: "Yes, unsubscribe me",
    unsubscribed_title: "You are unsubscribed",
    unsubscribed: "You will no longer receive",
    unsubscribed_all: "You will no longer receive messages from us.",
    already: "You were already unsubscribed from this.",
    unsubscribe_label: "Unsubscribed through the link in the e-mail",
    to_preferences: "To your preferences",
    form_expired: "This form is not valid. Open the link from the e-mail again.",
    view_gone: "This message is no longer available.",
    use_button: "Use the button on the unsubscribe page to unsubscribe.",
};

fn words(language: Language) -> &'static Words {
    match language {
        Language::En => &EN,
        Language::Nl => &NL,
    }
}

#[derive(Serialize)]
struct Choice {
    id: i64,
    name: String,
    description: String,
    checked: bool,
}

#[derive(Serialize)]
struct Link {
    href: String,
    text: &'static str,
}

/// What a page shows.
#[derive(Default)]
struct Page {
    title: String,
    lines: Vec<String>,
    choices: Vec<Choice>,
    form: Option<(String, String)>,
    confirm: Option<(&'static str, String)>,
    link: Option<Link>,
}

fn html(status: StatusCode, w: &Words, organisation: &str, page: Page) -> HttpResponse {
    let (action, form_key) = page
        .form
        .clone()
        .or_else(|| {
            page.confirm
                .as_ref()
                .map(|(_, a)| (a.clone(), String::new()))
        })
        .unwrap_or_default();
    let body = environment()
        .get_template("page.html")
        .and_then(|t| {
            t.render(context! {
                lang => w.lang,
                title => page.title,
                organisation => organisation,
                lines => page.lines,
                choices => minijinja::Value::from(minijinja::value::Serde(&page.choices)),
                action => action,
                form_key => form_key,
                legend => w.legend,
                save => w.save,
                unsubscribe_all => w.unsubscribe_all,
                confirm => page.confirm.map(|(c, _)| c),
                link => minijinja::Value::from(minijinja::value::Serde(&page.link)),
            })
        })
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "a recipient page did not render");
            String::from("<!doctype html><title>Error</title><p>Error</p>")
        });
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// The language and name pages are written in; defaults when the settings cannot be read.
async fn look(state: &AppState) -> (Language, String) {
    state
        .db(|conn| mailbaar_settings::load(conn).map_err(crate::error::ApiError::from))
        .await
        .map(|s| (s.language, s.organisation_name))
        .unwrap_or((Language::Nl, "Mailbaar".into()))
}

/// The friendly error page for a failure behind a recipient page; the cause is logged,
/// never shown.
async fn failed(state: &AppState, cause: impl std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %cause, "a recipient page failed");
    error_page(state, Shown::Failed).await
}

/// Which friendly error page a recipient sees.
enum Shown {
    Invalid,
    Expired,
    Failed,
}

/// Why a recipient page cannot be shown: the link's own refusal, or a failure of the
/// service behind it (no database connection).
enum PageError {
    Link(LinkRefusal),
    Service(ApiError),
}

impl From<LinkRefusal> for PageError {
    fn from(e: LinkRefusal) -> Self {
        PageError::Link(e)
    }
}

async fn refusal(state: &AppState, e: impl Into<PageError>) -> HttpResponse {
    match e.into() {
        PageError::Link(LinkRefusal::Invalid) => error_page(state, Shown::Invalid).await,
        PageError::Link(LinkRefusal::Expired) => error_page(state, Shown::Expired).await,
        PageError::Link(LinkRefusal::Failed(cause)) => failed(state, cause).await,
        PageError::Service(cause) => failed(state, cause).await,
    }
}

async fn error_page(state: &AppState, shown: Shown) -> HttpResponse {
    let (language, org) = look(state).await;
    let w = words(language);
    let (status, title, line) = match shown {
        Shown::Invalid => (StatusCode::NOT_FOUND, w.invalid_title, w.invalid),
        Shown::Expired => (StatusCode::GONE, w.expired_title, w.expired),
        Shown::Failed => (StatusCode::INTERNAL_SERVER_ERROR, w.failed_title, w.failed),
    };
    html(
        status,
        w,
        &org,
        Page {
            title: title.into(),
            lines: vec![line.into()],
            ..Default::default()
        },
    )
}

async fn reach(
    state: &AppState,
    purpose: LinkPurpose,
    token: String,
) -> Result<Reached, PageError> {
    let delivery = state.delivery.clone();
    state
        .db(move |conn| {
            Ok::<_, crate::error::ApiError>(mailbaar_delivery::reach(
                conn,
                &delivery,
                purpose,
                &token,
                mailbaar_store::now(),
            ))
        })
        .await
        .map_err(PageError::Service)?
        .map_err(PageError::Link)
}

fn preferences_url(state: &AppState, reached: &Reached) -> String {
    state
        .delivery
        .links()
        .for_moment(reached.contact_moment_id, reached.occurred_at)
        .preferences_url
}

fn path_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| url.to_owned())
}

async fn preference_page(
    state: &AppState,
    reached: Reached,
    done: Option<(&'static str, Vec<String>)>,
) -> HttpResponse {
    let r = reached.clone();
    let shown = state
        .db(move |conn| mailbaar_delivery::preferences(conn, &r))
        .await;
    let (language, org) = look(state).await;
    let w = words(language);
    let shown = match shown {
        Ok(s) => s,
        Err(e) => return failed(state, e).await,
    };
    let mut page = Page {
        title: done.as_ref().map_or(w.preferences_title, |d| d.0).into(),
        ..Default::default()
    };
    if shown.anonymized {
        page.title = w.preferences_title.into();
        page.lines = vec![w.nothing_personal.into()];
        return html(StatusCode::OK, w, &org, page);
    }
    if let Some((_, lines)) = done {
        page.lines = lines;
    } else {
        page.lines.push(match &shown.first_name {
            Some(name) if !name.trim().is_empty() => format!("{} {name},", w.hello),
            _ => format!("{},", w.hello),
        });
        page.lines.push(w.intro.into());
    }
    page.choices = shown
        .choices
        .iter()
        .map(|c| Choice {
            id: c.opt_in_type_id,
            name: c.name.clone(),
            description: c.description.clone(),
            checked: c.opted_in,
        })
        .collect();
    page.form = Some((
        path_of(&preferences_url(state, &reached)),
        state.delivery.links().form_key(reached.contact_moment_id),
    ));
    html(StatusCode::OK, w, &org, page)
}

/// The preference centre: the person's first name and every active opt-in type with its
/// state, to change and save (AVG manual §1.2).
#[get("/r/preferences/{token}")]
pub async fn preferences(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    match reach(&state, LinkPurpose::Preferences, token.into_inner()).await {
        Ok(reached) => preference_page(&state, reached, None).await,
        Err(e) => refusal(&state, e).await,
    }
}

/// Saves the preference centre: one consent record per changed type, or a full
/// unsubscribe; then a confirmation.
#[post("/r/preferences/{token}")]
pub async fn save_preferences(
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let reached = match reach(&state, LinkPurpose::Preferences, token.into_inner()).await {
        Ok(r) => r,
        Err(e) => return refusal(&state, e).await,
    };
    let (language, org) = look(&state).await;
    let w = words(language);
    let (mut wanted, mut shown) = (BTreeSet::new(), BTreeSet::new());
    let (mut form_key, mut everything) = (String::new(), false);
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "type" => {
                if let Ok(id) = v.parse() {
                    wanted.insert(id);
                }
            }
            "shown" => {
                if let Ok(id) = v.parse() {
                    shown.insert(id);
                }
            }
            "form_key" => form_key = v.into_owned(),
            "action" => everything = v == "unsubscribe_all",
            _ => {}
        }
    }
    if !state
        .delivery
        .links()
        .form_key_matches(reached.contact_moment_id, &form_key)
    {
        return html(
            StatusCode::FORBIDDEN,
            w,
            &org,
            Page {
                title: w.failed_title.into(),
                lines: vec![w.form_expired.into()],
                link: Some(Link {
                    href: path_of(&preferences_url(&state, &reached)),
                    text: w.to_preferences,
                }),
                ..Default::default()
            },
        );
    }
    let r = reached.clone();
    let label = w.unsubscribe_all_label;
    let saved = state
        .db(move |conn| {
            mailbaar_delivery::save_preferences(conn, &r, &shown, &wanted, everything, label)
        })
        .await;
    match saved {
        Ok(n) => {
            let mut lines = vec![w.saved.to_owned()];
            if everything {
                lines.push(w.everything_withdrawn.into());
            } else if n == 0 {
                lines.push(w.unchanged.into());
            }
            preference_page(&state, reached, Some((w.saved_title, lines))).await
        }
        Err(e) => failed(&state, e).await,
    }
}

/// The unsubscribe link's page: asks to confirm (mail scanners follow links, so a GET
/// changes nothing).
#[get("/r/unsubscribe/{token}")]
pub async fn unsubscribe_page(
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> HttpResponse {
    let reached = match reach(&state, LinkPurpose::Unsubscribe, token.into_inner()).await {
        Ok(r) => r,
        Err(e) => return refusal(&state, e).await,
    };
    let (language, org) = look(&state).await;
    let w = words(language);
    let r = reached.clone();
    let type_name = state
        .db(move |conn| mailbaar_delivery::unsubscribe_target(conn, &r))
        .await
        .ok()
        .flatten();
    let own = state
        .delivery
        .links()
        .for_moment(reached.contact_moment_id, reached.occurred_at);
    html(
        StatusCode::OK,
        w,
        &org,
        Page {
            title: w.unsubscribe_title.into(),
            lines: vec![match type_name {
                Some(name) => format!("{} “{name}”?", w.unsubscribe_question),
                None => w.unsubscribe_question_all.into(),
            }],
            confirm: Some((w.confirm, path_of(&own.unsubscribe_url))),
            link: Some(Link {
                href: path_of(&own.preferences_url),
                text: w.to_preferences,
            }),
            ..Default::default()
        },
    )
}

/// RFC 8058 one-click unsubscribe (`List-Unsubscribe=One-Click` in the body; no cookie
/// needed), and the confirm page's button: an opt-out of the step's opt-in type.
#[post("/r/unsubscribe/{token}")]
pub async fn unsubscribe(
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let reached = match reach(&state, LinkPurpose::Unsubscribe, token.into_inner()).await {
        Ok(r) => r,
        Err(e) => return refusal(&state, e).await,
    };
    let (language, org) = look(&state).await;
    let w = words(language);
    // RFC 8058 §3.1: the body is `List-Unsubscribe=One-Click`, URL-encoded or as a
    // multipart/form-data field of that name.
    let text = String::from_utf8_lossy(&body);
    let one_click = url::form_urlencoded::parse(&body)
        .any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click")
        || text
            .split("\r\n\r\n")
            .zip(text.split("\r\n\r\n").skip(1))
            .any(|(head, value)| {
                head.contains("name=\"List-Unsubscribe\"") && value.starts_with("One-Click")
            });
    if !one_click {
        return html(
            StatusCode::BAD_REQUEST,
            w,
            &org,
            Page {
                title: w.failed_title.into(),
                lines: vec![w.use_button.into()],
                ..Default::default()
            },
        );
    }
    let r = reached.clone();
    let label = w.unsubscribe_label;
    let done = state
        .db(move |conn| mailbaar_delivery::unsubscribe(conn, &r, label))
        .await;
    let lines = match done {
        Ok(Unsubscribed::Type(name)) => vec![format!("{} “{name}”.", w.unsubscribed)],
        Ok(Unsubscribed::Everything) => vec![w.unsubscribed_all.into()],
        Ok(Unsubscribed::Nothing) => vec![w.already.into()],
        Err(e) => return failed(&state, e).await,
    };
    html(
        StatusCode::OK,
        w,
        &org,
        Page {
            title: w.unsubscribed_title.into(),
            lines,
            link: Some(Link {
                href: path_of(&preferences_url(&state, &reached)),
                text: w.to_preferences,
            }),
            ..Default::default()
        },
    )
}

/// The open pixel: records the open; always the image, whatever the token.
#[get("/r/o/{token}")]
pub async fn open_pixel(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    let delivery = state.delivery.clone();
    let token = token.into_inner();
    if let Err(e) = state
        .db(move |conn| {
            mailbaar_delivery::track(conn, &delivery, &token, false, mailbaar_store::now())
        })
        .await
    {
        tracing::warn!(error = %e, "an open was not recorded");
    }
    HttpResponse::Ok()
        .content_type("image/gif")
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store, max-age=0"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(PIXEL)
}

/// The click redirect: records the click and redirects to the link's target, which the
/// signature covers (no open redirect). A link that does not verify gets a plain page.
#[get("/r/c/{token}")]
pub async fn click(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    let delivery = state.delivery.clone();
    let token = token.into_inner();
    let tracked = state
        .db(move |conn| {
            mailbaar_delivery::track(conn, &delivery, &token, true, mailbaar_store::now())
        })
        .await;
    let target = tracked.map(|t| match t {
        Some(TrackedLink::Click { target, .. }) => Some(target),
        _ => None,
    });
    click_answer(&state, target).await
}

/// The answer to a click: a redirect to its verified target, else the invalid-link page
/// (a failure to record it is logged).
async fn click_answer(
    state: &AppState,
    target: Result<Option<String>, crate::error::ApiError>,
) -> HttpResponse {
    match target {
        Ok(Some(target)) => HttpResponse::Found()
            .insert_header((header::LOCATION, target))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .finish(),
        other => {
            if let Err(e) = other {
                tracing::warn!(error = %e, "a click was not recorded");
            }
            refusal(state, LinkRefusal::Invalid).await
        }
    }
}

/// The click redirect of a link in a message's link table: one signature per message,
/// the index names the link of the content it was sent with (no open redirect either).
#[get("/r/c/{token}/{index}")]
pub async fn table_click(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let delivery = state.delivery.clone();
    let (token, index) = path.into_inner();
    let tracked = state
        .db(move |conn| {
            mailbaar_delivery::track_click(conn, &delivery, &token, &index, mailbaar_store::now())
        })
        .await;
    click_answer(&state, tracked).await
}

/// The web version: the message as that recipient got it.
#[get("/r/view/{token}")]
pub async fn view_online(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    let reached = match reach(&state, LinkPurpose::View, token.into_inner()).await {
        Ok(r) => r,
        Err(e) => return refusal(&state, e).await,
    };
    let delivery = state.delivery.clone();
    let shown = state
        .db(move |conn| mailbaar_delivery::view_online(conn, &delivery, &reached))
        .await;
    match shown {
        Ok(Some(body)) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body),
        Ok(None) => {
            let (language, org) = look(&state).await;
            let w = words(language);
            html(
                StatusCode::NOT_FOUND,
                w,
                &org,
                Page {
                    title: w.invalid_title.into(),
                    lines: vec![w.view_gone.into()],
                    ..Default::default()
                },
            )
        }
        Err(e) => failed(&state, e).await,
    }
}

/// The methods of the recipient pages, for requests with another one.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("r"), Some("preferences" | "unsubscribe"), Some(t), None) if !t.is_empty() => {
            Some("GET, POST")
        }
        (Some("r"), Some("view" | "o" | "c"), Some(t), None) if !t.is_empty() => Some("GET"),
        (Some("r"), Some("c"), Some(t), Some(i)) if !t.is_empty() && !i.is_empty() => {
            parts.next().is_none().then_some("GET")
        }
        _ => None,
    }
}

/// The answer to a request under `/r/` no page takes: an HTML page, 405 with `Allow` for
/// a method a page does not take, else 404.
pub async fn elsewhere(state: &AppState, path: &str) -> HttpResponse {
    let (language, org) = look(state).await;
    let w = words(language);
    let page = Page {
        title: w.invalid_title.into(),
        lines: vec![w.invalid.into()],
        ..Default::default()
    };
    match allowed_methods(path) {
        Some(allow) => {
            let mut res = html(StatusCode::METHOD_NOT_ALLOWED, w, &org, page);
            res.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            res
        }
        None => html(StatusCode::NOT_FOUND, w, &org, page),
    }
}
