//! The preference centre in a real browser (headless Chromium through chromedriver), on
//! both engines: opened from a message the service really sent, two opt-ins changed and
//! saved, the confirmation seen, and the ledger holding both records with their channel
//! and contact moment. Screenshots at 360 and 1280 px wide go under `target/screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (Debian; `.ci/run` installs them). Without
//! them the test says it was skipped, except under `CI`, where it fails.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use fantoccini::{ClientBuilder, Locator};
use mailbaar_e2e::mailing::{links_in, message_to, ok, opt_in, ready_step, send_and_wait, world};
use mailbaar_e2e::TestApp;
use mailbaar_store::schema::contact_moments;
use serde_json::{json, Value};

mailbaar_store::both_engines!(async with mailbaar_e2e::on: preference_centre_in_a_browser);

/// A chromedriver process on a free port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Option<Driver> {
        let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            assert!(
                std::env::var_os("CI").is_none(),
                "chromedriver is missing (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipped: chromedriver is not installed");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver does not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn preference_centre_in_a_browser(app: TestApp) {
    let Some(driver) = Driver::start() else {
        return;
    };
    let w = world(&app).await;
    let events = ok(
        app.admin(
            "POST",
            "/api/v1/opt-in-types",
            Some(json!({"kind": "custom", "name": "Evenementen", "description": "Uitnodigingen voor onze avonden"})),
        )
        .await,
        201,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let eva = w.real[4];
    // Eva also wants the profiling opt-in gone? Not offered: profiling stays off the page.
    opt_in(&app, eva, w.type_id).await;
    let step = ready_step(&app, &w).await;
    let job = send_and_wait(&app, step).await;
    let links = links_in(&message_to(&app, job, "eva@example.nl"));
    let preferences = links
        .iter()
        .find(|l| l.starts_with("/r/preferences/"))
        .expect("the message links the preference centre");
    let moment: i64 = {
        let mut conn = app.pool.get().unwrap();
        contact_moments::table
            .filter(contact_moments::person_id.eq(eva))
            .filter(contact_moments::mail_job_id.eq(job))
            .select(contact_moments::id)
            .first(&mut conn)
            .unwrap()
    };

    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium", "args": ["--headless=new", "--no-sandbox",
            "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session");
    let url = format!("{}{preferences}", app.base);
    let name = app.backend.name();
    for width in [360u32, 1280] {
        browser.set_window_size(width, 900).await.unwrap();
        browser.goto(&url).await.unwrap();
        let h1 = browser
            .find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(h1, "Uw voorkeuren");
        // Usable at this width: nothing wider than the screen.
        let fits = browser
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, Value::Bool(true), "the page fits {width} px");
        let png = browser.screenshot().await.unwrap();
        std::fs::write(
            screenshots_dir().join(format!("preferences-{width}-{name}.png")),
            png,
        )
        .unwrap();
    }
    // The page is in Dutch, greets Eva, and labels every control.
    let facts = browser
        .execute(
            "return [document.documentElement.lang,
                     document.body.innerText.includes('Beste Eva'),
                     [...document.querySelectorAll('input[type=checkbox]')]
                        .every(i => document.querySelector('label[for=\"' + i.id + '\"]'))];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(facts, json!(["nl", true, true]));

    // Change two opt-ins: the newsletter off, events on; save.
    let newsletter = browser
        .find(Locator::Css(&format!("#type-{}", w.type_id)))
        .await
        .unwrap();
    assert!(newsletter.is_selected().await.unwrap());
    newsletter.click().await.unwrap();
    let evenementen = browser
        .find(Locator::Css(&format!("#type-{events}")))
        .await
        .unwrap();
    assert!(!evenementen.is_selected().await.unwrap());
    // Click the label, as a person would.
    browser
        .find(Locator::Css(&format!("label[for=\"type-{events}\"]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(Locator::Css("button[value=save]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let h1 = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(
            "//h1[text()='Uw voorkeuren zijn opgeslagen']",
        ))
        .await
        .expect("the confirmation");
    assert_eq!(h1.text().await.unwrap(), "Uw voorkeuren zijn opgeslagen");
    let png = browser.screenshot().await.unwrap();
    std::fs::write(
        screenshots_dir().join(format!("preferences-saved-1280-{name}.png")),
        png,
    )
    .unwrap();
    browser.close().await.unwrap();

    // The ledger: both changes, from the preference centre, with the contact moment.
    let history = ok(
        app.admin("GET", &format!("/api/v1/persons/{eva}/consents"), None)
            .await,
        200,
    )
    .await;
    let from_centre: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["channel"] == "preference_centre")
        .collect();
    assert_eq!(from_centre.len(), 2, "{history}");
    for r in &from_centre {
        assert_eq!(r["contact_moment_id"], moment);
        assert_eq!(r["recorded_by"], "recipient");
    }
    let by_type = |t: i64| {
        from_centre
            .iter()
            .find(|r| r["opt_in_type_id"] == t)
            .unwrap()
    };
    assert_eq!(by_type(w.type_id)["opt_in"], false);
    assert_eq!(by_type(events)["opt_in"], true);
    assert!(by_type(events)["description"]
        .as_str()
        .unwrap()
        .starts_with("Evenementen"));
}
