//! The web UI end to end: real headless Chromium driven through chromedriver (WebDriver) against
//! a server over the demo constituency, one browser for the whole test, a new session per user
//! (cookies cleared). Runs when `NIGEHBAN_TEST_CHROMIUM=1` (needs `/usr/bin/chromium` and
//! `/usr/bin/chromedriver`); skipped with a notice otherwise, and failing under `CI=true`.
//!
//! `ui_over_http` checks what needs no browser (headers, redirects, CSRF, hidden objects) and
//! always runs.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use nigehban_policy::{Principal, Role};
use nigehban_server::ServerConfig;
use nigehban_server::demo::{self, DemoUser};
use nigehban_store::ObjectFilter;
use uuid::Uuid;

use crate::common::{Backend, TestServer};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

// Titles of the demo material.
const MOFA_AMBER: &str = "Persistent outbound connections to known C2 infrastructure";
const MOFA_ALERT: &str = "Beaconing: 10.20.4.17 → 203.0.113.77:443 every 60 s";
const MOFA_RED: &str = "Ambassador's mailbox accessed from abroad";
const SOGC_AMBER: &str = "21 virtual servers deleted in the core data centre";
const NTC_AMBER: &str = "Zimbra mail platform compromised; internal users impersonated";
const NTC_GREEN_INDICATOR: &str = "Zimbra web shell upload path";
const ITBOARD_STRICT: &str = "Senior accounts compromised across several federal ministries";
const NCERT_CLEAR_INDICATOR: &str = "C2 server 203.0.113.77";
const ENGAGEMENT: &str = "Annual information security audit 2026 (Foreign Affairs)";
const ALL_INCIDENTS: [&str; 5] = [MOFA_AMBER, MOFA_RED, SOGC_AMBER, NTC_AMBER, ITBOARD_STRICT];
const ALL_TITLES: [&str; 9] = [
    MOFA_AMBER,
    MOFA_ALERT,
    MOFA_RED,
    SOGC_AMBER,
    NTC_AMBER,
    NTC_GREEN_INDICATOR,
    ITBOARD_STRICT,
    NCERT_CLEAR_INDICATOR,
    ENGAGEMENT,
];

fn chromium_enabled() -> bool {
    if std::env::var("NIGEHBAN_TEST_CHROMIUM").as_deref() == Ok("1") {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "NIGEHBAN_TEST_CHROMIUM is not set: under CI=true the Chromium end-to-end tests must run \
         (apt-get install chromium chromium-driver, then NIGEHBAN_TEST_CHROMIUM=1)"
    );
    eprintln!("notice: NIGEHBAN_TEST_CHROMIUM not set; the Chromium end-to-end tests of the UI are skipped");
    false
}

/// A server over the demo constituency (sign-in limiter relaxed: every login comes from one
/// address, and the test signs in often).
async fn demo_server() -> (TestServer, Vec<DemoUser>) {
    let config = ServerConfig { login_attempts_per_minute: 10_000, ..ServerConfig::default() };
    let server = TestServer::start_with(Backend::Sqlite, config).await;
    let users = demo::seed(server.store()).await.unwrap();
    (server, users)
}

/// The id of an object whose title contains `title`, as `username` sees it.
async fn object_id(server: &TestServer, username: &str, title: &str) -> Uuid {
    let store = server.store();
    let user = store.user_by_username(username).await.unwrap().unwrap();
    let principal = Principal { user: Some(user.id), org: user.org, role: user.role, scopes: None };
    let tree = store.tree().await.unwrap();
    let filter = ObjectFilter { q: Some(title.to_owned()), ..ObjectFilter::default() };
    let page = store.list_objects(&principal, &tree, &filter, None, 10).await.unwrap();
    let o = page.items.iter().find(|o| o.title.contains(title)).unwrap_or_else(|| panic!("{username} sees {title:?}"));
    o.id
}

/// chromedriver (and the Chromium it starts) in a process group of its own, ended on drop.
struct Driver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMEDRIVER}: {e} (apt-get install chromium chromium-driver)"));
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}"), profile: tempfile::tempdir().unwrap() };
        let http = crate::common::client();
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "chromedriver did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    async fn browser(&self) -> Client {
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1280,1024".to_owned(),
            format!("--user-data-dir={}", self.profile.path().display()),
        ];
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        });
        let serde_json::Value::Object(caps) = caps else { unreachable!() };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group holds chromedriver and the browser it launched, and nothing else.
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser, pointed at the test server.
struct Ui {
    c: Client,
    base: String,
}

impl Ui {
    async fn goto(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// Path and query of the current page.
    async fn path(&self) -> String {
        let url = self.c.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn find(&self, css: &str) -> Element {
        match self.c.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("{css} on {}: {e}", self.path().await),
        }
    }

    async fn exists(&self, css: &str) -> bool {
        !self.c.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    async fn h1(&self) -> String {
        self.find("h1").await.text().await.unwrap()
    }

    async fn main_text(&self) -> String {
        self.find("main").await.text().await.unwrap()
    }

    async fn source(&self) -> String {
        self.c.source().await.unwrap()
    }

    /// Waits until the current page satisfies `ready` (after a click that navigates).
    async fn wait_until(&self, what: &str, ready: impl AsyncFn(&Ui) -> bool) {
        let start = Instant::now();
        while !ready(self).await {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "timed out waiting for {what} (at {})",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The titles in the list of objects on the page.
    async fn listed(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in self.c.find_all(Locator::Css("table.objects tbody td:first-child a")).await.unwrap() {
            out.push(a.text().await.unwrap());
        }
        out
    }

    async fn list_of(&self, plural: &str) -> Vec<String> {
        self.goto(&format!("/objects/{plural}")).await;
        assert_eq!(self.h1().await, heading_of(plural));
        self.listed().await
    }

    /// A fresh session: cookies cleared, then the sign-in form, submitted with the keyboard.
    async fn sign_in(&self, username: &str, password: &str) {
        self.c.delete_all_cookies().await.unwrap();
        self.goto("/login").await;
        self.submit_login(username, password).await;
    }

    async fn submit_login(&self, username: &str, password: &str) {
        let field = self.find("#username").await;
        field.clear().await.unwrap();
        // Keyboard only: type the name, Tab to the password, Enter submits.
        field
            .send_keys(&format!("{username}{}{password}{}", char::from(Key::Tab), char::from(Key::Enter)))
            .await
            .unwrap();
        self.wait_until("the sign-in to finish", async |ui: &Ui| {
            !ui.path().await.starts_with("/login") || ui.exists("#login-error").await
        })
        .await;
    }

    /// Signs in a demo user and checks the dashboard it lands on.
    async fn sign_in_as(&self, u: &DemoUser) {
        self.sign_in(&u.username, &u.password).await;
        assert_eq!(self.path().await, "/", "{} lands on the dashboard", u.username);
        assert_eq!(self.h1().await, "Dashboard");
        let role: Role = u.role.parse().unwrap();
        let lead = self.find("main .lead").await.text().await.unwrap();
        assert!(lead.contains(role.label()) && lead.contains(&u.organisation), "{}: {lead}", u.username);
        self.check_page().await;
    }

    /// Accessibility basics of the page: a language, a title, one main landmark and one h1,
    /// a label for every form control, a name for every link and button, the skip link first.
    async fn check_page(&self) {
        let problems = self
            .c
            .execute(
                r#"
                const p = [];
                if (!document.documentElement.lang) p.push('no lang');
                if (!document.title) p.push('no title');
                if (document.querySelectorAll('main').length !== 1) p.push('main landmarks: ' + document.querySelectorAll('main').length);
                if (document.querySelectorAll('h1').length !== 1) p.push('h1: ' + document.querySelectorAll('h1').length);
                for (const el of document.querySelectorAll('input, select, textarea')) {
                    if (el.type === 'hidden') continue;
                    const ok = (el.id && document.querySelector('label[for="' + el.id + '"]')) || el.closest('label')
                        || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
                    if (!ok) p.push('unlabelled control ' + (el.name || el.id));
                }
                for (const el of document.querySelectorAll('a, button')) {
                    if (!el.textContent.trim() && !el.getAttribute('aria-label')) p.push('unnamed ' + el.outerHTML);
                }
                const first = document.querySelector('a, button, input, select, textarea');
                if (!first || first.getAttribute('href') !== '#main') p.push('the skip link is not first');
                return p;
                "#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(problems, serde_json::json!([]), "accessibility problems on {}", self.path().await);
    }

    /// Saves a screenshot when `NIGEHBAN_UI_SCREENSHOTS` names a directory (to look at the pages).
    async fn shot(&self, name: &str) {
        if let Ok(dir) = std::env::var("NIGEHBAN_UI_SCREENSHOTS") {
            let png = self.c.screenshot().await.unwrap();
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    async fn count(&self, key: &str) -> u64 {
        self.find(&format!("dd[data-count='{key}']")).await.text().await.unwrap().trim().parse().unwrap()
    }

    async fn sign_out(&self) {
        self.find("header form[action='/logout'] button").await.click().await.unwrap();
        self.wait_until("the sign-out", async |ui: &Ui| ui.path().await == "/login?signed_out=1").await;
    }
}

fn heading_of(plural: &str) -> &'static str {
    match plural {
        "incidents" => "Incidents",
        "alerts" => "Alerts",
        "indicators" => "Indicators",
        "engagements" => "Audit engagements",
        "events" => "Events",
        "sightings" => "Sightings",
        _ => panic!("{plural}"),
    }
}

/// `rgb(r, g, b)` or opaque `rgba(r, g, b, 1)` as `r, g, b`.
fn rgb(css: &str) -> &str {
    let inner = css.trim_start_matches("rgba(").trim_start_matches("rgb(").trim_end_matches(')');
    inner.strip_suffix(", 1").unwrap_or(inner)
}

fn has(list: &[String], title: &str) -> bool {
    list.iter().any(|t| t.contains(title))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_in_chromium() {
    if !chromium_enabled() {
        return;
    }
    let (server, users) = demo_server().await;
    let user = |name: &str| users.iter().find(|u| u.username == name).unwrap().clone();
    let driver = Driver::start().await;
    let ui = Ui { c: driver.browser().await, base: server.base.clone() };

    // Without a session every page goes to the sign-in page, and back after it.
    ui.c.delete_all_cookies().await.unwrap();
    ui.goto("/objects/incidents?tlp=AMBER").await;
    assert!(ui.path().await.starts_with("/login?next="), "{}", ui.path().await);
    assert_eq!(ui.h1().await, "Sign in");
    ui.shot("login").await;
    ui.check_page().await;
    let reporter = user("mofa.reporter");
    ui.submit_login(&reporter.username, &reporter.password).await;
    assert_eq!(ui.path().await, "/objects/incidents?tlp=AMBER");

    // A wrong password shows an error and opens no session.
    ui.sign_in("mofa.reporter", "not the password at all").await;
    assert_eq!(ui.path().await, "/login");
    assert_eq!(ui.find("#login-error").await.text().await.unwrap(), "Wrong user name or password.");
    ui.shot("login-error").await;
    ui.goto("/").await;
    assert!(ui.path().await.starts_with("/login"));

    // Every demo login works and lands on its dashboard.
    for u in &users {
        ui.sign_in_as(u).await;
    }

    // The platform administrator: accounts, tokens and the audit log; no content.
    ui.sign_in_as(&user("admin")).await;
    let text = ui.main_text().await;
    assert!(text.contains("Accounts and tokens") && text.contains("Latest in the audit log"), "{text}");
    assert_eq!(ui.count("users").await, 8);
    ui.shot("dashboard-admin").await;
    let source = ui.source().await;
    for t in ALL_TITLES {
        assert!(!source.contains(t), "the administrator's dashboard shows {t:?}");
    }
    let nav = ui.find("nav.main-nav").await.text().await.unwrap();
    assert!(!nav.contains("Incidents") && nav.contains("Accounts") && nav.contains("Audit log"), "{nav}");
    ui.goto("/objects/incidents").await;
    assert_eq!(ui.h1().await, "Not allowed");
    let mofa_amber = object_id(&server, "mofa.reporter", MOFA_AMBER).await;
    ui.goto(&format!("/objects/incidents/{mofa_amber}")).await;
    assert_eq!(ui.h1().await, "Not found");
    assert!(!ui.source().await.contains(MOFA_AMBER));
    ui.goto("/admin/users").await;
    assert!(ui.main_text().await.contains("mofa.reporter"));
    ui.check_page().await;
    ui.goto("/audit").await;
    assert_eq!(ui.h1().await, "Audit log");
    ui.shot("audit").await;
    assert!(ui.main_text().await.contains("user.login"));
    ui.check_page().await;
    ui.goto("/tree").await;
    let tree = ui.main_text().await;
    assert!(tree.contains("Crescent Assurance") && tree.contains("Highlands University"), "{tree}");
    ui.shot("tree-admin").await;

    // nCERT's analyst: everything, the RED incident because it is named.
    ui.sign_in_as(&user("national.analyst")).await;
    assert_eq!(ui.count("incidents").await, 5);
    assert_eq!(ui.count("alerts").await, 1);
    assert_eq!(ui.count("indicators").await, 2);
    assert_eq!(ui.count("engagements").await, 1);
    ui.shot("dashboard-national").await;
    let incidents = ui.list_of("incidents").await;
    for t in ALL_INCIDENTS {
        assert!(has(&incidents, t), "national.analyst sees {t:?}: {incidents:?}");
    }
    ui.check_page().await;

    // The Capital CERT: its constituency; its manager also the RED incident naming her.
    ui.sign_in_as(&user("capital.analyst")).await;
    let incidents = ui.list_of("incidents").await;
    assert!(has(&incidents, MOFA_AMBER) && has(&incidents, NTC_AMBER) && has(&incidents, ITBOARD_STRICT));
    assert!(!has(&incidents, MOFA_RED) && !has(&incidents, SOGC_AMBER), "{incidents:?}");
    ui.sign_in_as(&user("capital.manager")).await;
    let incidents = ui.list_of("incidents").await;
    assert!(has(&incidents, MOFA_RED), "capital.manager is named on the RED incident: {incidents:?}");
    // Her CERT shares the Foreign Ministry's AMBER incident on need-to-know, inside its constituency.
    let mofa_amber = object_id(&server, "capital.manager", MOFA_AMBER).await;
    ui.goto(&format!("/objects/incidents/{mofa_amber}")).await;
    ui.check_page().await;
    let mut offered = Vec::new();
    for o in ui.c.find_all(Locator::Css("#s-target option")).await.unwrap() {
        offered.push(o.text().await.unwrap());
    }
    assert!(offered.contains(&"Ministry of Finance".to_owned()), "{offered:?}");
    assert!(!offered.iter().any(|o| o.contains("community") || o.contains("public") || o.contains("Foreign")));
    ui.find("#s-target").await.select_by_label("Ministry of Finance").await.unwrap();
    ui.c.find(Locator::XPath("//button[normalize-space()='Share']")).await.unwrap().click().await.unwrap();
    ui.wait_until("the share", async |ui: &Ui| ui.path().await.ends_with("?shared=1")).await;
    assert_eq!(
        ui.find("#shares").await.text().await.unwrap(),
        "Capital Territory CERT shared it with Ministry of Finance"
    );
    // The RED incident cannot be shared at all.
    let mofa_red = object_id(&server, "capital.manager", MOFA_RED).await;
    ui.goto(&format!("/objects/incidents/{mofa_red}")).await;
    assert_eq!(ui.h1().await, MOFA_RED);
    assert!(!ui.exists("#s-target").await);

    // Navigation: tree → organisation → object.
    ui.sign_in_as(&user("capital.analyst")).await;
    ui.goto("/tree").await;
    ui.check_page().await;
    ui.c.find(Locator::LinkText("Ministry of Foreign Affairs")).await.unwrap().click().await.unwrap();
    ui.wait_until("the organisation page", async |ui: &Ui| ui.path().await.starts_with("/orgs/")).await;
    assert_eq!(ui.h1().await, "Ministry of Foreign Affairs");
    ui.shot("org").await;
    let profile = ui.main_text().await;
    for s in ["mofa.gov.example", "192.0.2.0/26", "Omar Farooq (Foreign Affairs)", "Capital Territory CERT"] {
        assert!(profile.contains(s), "the profile shows {s:?}: {profile}");
    }
    assert!(!profile.contains(MOFA_RED));
    ui.check_page().await;
    ui.c.find(Locator::LinkText(MOFA_AMBER)).await.unwrap().click().await.unwrap();
    ui.wait_until("the object page", async |ui: &Ui| ui.path().await.starts_with("/objects/incidents/")).await;
    assert_eq!(ui.h1().await, MOFA_AMBER);
    let badge = ui.find("#tlp").await;
    assert_eq!(badge.text().await.unwrap(), "TLP:AMBER");
    // The stylesheet is served and allowed by the CSP: FIRST's amber on black.
    assert_eq!(rgb(&badge.css_value("color").await.unwrap()), "255, 192, 0");
    assert_eq!(rgb(&badge.css_value("background-color").await.unwrap()), "0, 0, 0");
    assert_eq!(ui.find("#owner").await.text().await.unwrap(), "Ministry of Foreign Affairs");
    assert!(ui.main_text().await.contains("203.0.113.77"));
    ui.shot("object").await;
    assert!(!ui.exists("#s-target").await, "a CERT analyst does not share");
    ui.check_page().await;
    // Shares are shown to the owner's chain.
    let ntc_incident = object_id(&server, "telecom.lead", NTC_AMBER).await;
    ui.goto(&format!("/objects/incidents/{ntc_incident}")).await;
    assert_eq!(
        ui.find("#shares").await.text().await.unwrap(),
        "Capital Territory CERT shared it with Ministry of Finance"
    );
    ui.shot("object-shared").await;

    // The Foreign Ministry's reporter: its AMBER incident, not National Telecom's, not the RED one.
    ui.sign_in_as(&reporter).await;
    let incidents = ui.list_of("incidents").await;
    assert!(has(&incidents, MOFA_AMBER), "{incidents:?}");
    assert!(!has(&incidents, NTC_AMBER) && !has(&incidents, MOFA_RED), "{incidents:?}");
    // What it may not see answers the not-found page, and says nothing of it.
    ui.goto(&format!("/objects/incidents/{ntc_incident}")).await;
    assert_eq!(ui.h1().await, "Not found");
    ui.shot("not-found").await;
    assert!(!ui.source().await.contains("Zimbra"));
    ui.goto(&format!("/objects/incidents/{mofa_red}")).await;
    assert_eq!(ui.h1().await, "Not found");
    ui.goto(&format!("/orgs/{}", user("telecom.lead").organisation_id)).await;
    assert_eq!(ui.h1().await, "Not found");
    ui.check_page().await;
    ui.goto("/objects/indicators").await;
    assert_eq!(ui.h1().await, "Not allowed");

    // The Foreign Ministry's lead: the community-shared GREEN indicator, not nCERT's unshared one.
    ui.sign_in_as(&user("mofa.lead")).await;
    let indicators = ui.list_of("indicators").await;
    assert!(has(&indicators, NTC_GREEN_INDICATOR), "{indicators:?}");
    // nCERT's CLEAR indicator is shared with the whole community.
    assert!(has(&indicators, NCERT_CLEAR_INDICATOR), "{indicators:?}");

    // National Telecom's lead: its indicator and incident, not the Foreign Ministry's.
    ui.sign_in_as(&user("telecom.lead")).await;
    let indicators = ui.list_of("indicators").await;
    assert!(has(&indicators, NTC_GREEN_INDICATOR), "{indicators:?}");
    let incidents = ui.list_of("incidents").await;
    assert!(has(&incidents, NTC_AMBER) && !has(&incidents, MOFA_AMBER), "{incidents:?}");

    // The auditor: the engagement assigned to her, and nothing else.
    ui.sign_in_as(&user("auditor")).await;
    assert_eq!(ui.count("engagements").await, 1);
    assert!(!ui.exists("dd[data-count='incidents']").await);
    let nav = ui.find("nav.main-nav").await.text().await.unwrap();
    assert!(!nav.contains("Incidents") && nav.contains("Audit engagements"), "{nav}");
    let engagements = ui.list_of("engagements").await;
    assert_eq!(engagements, vec![ENGAGEMENT.to_owned()]);
    ui.shot("auditor-engagements").await;
    ui.goto("/objects/incidents").await;
    assert_eq!(ui.h1().await, "Not allowed");
    ui.goto("/audit").await;
    assert_eq!(ui.h1().await, "Not allowed");

    // Reporting an incident through the form; it then appears in the list.
    ui.sign_in_as(&user("mofa.lead")).await;
    let amber_title = "UI test: phishing wave against consular staff";
    let red_title = "UI test: RED note only its author sees";
    for (title, tlp) in [(amber_title, "AMBER"), (red_title, "RED")] {
        ui.goto("/objects/incidents").await;
        ui.check_page().await;
        ui.find("#n-title").await.send_keys(title).await.unwrap();
        ui.find("#n-tlp").await.select_by_value(tlp).await.unwrap();
        ui.find("#n-description")
            .await
            .send_keys("Spoofed consular e-mails\nwith a link to a fake portal.")
            .await
            .unwrap();
        ui.c.find(Locator::XPath("//button[normalize-space()='Report incident']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        ui.wait_until("the new incident's page", async |ui: &Ui| ui.path().await.ends_with("?created=1")).await;
        assert_eq!(ui.h1().await, title);
        assert_eq!(ui.find("#tlp").await.text().await.unwrap(), format!("TLP:{tlp}"));
        assert!(ui.main_text().await.contains("Incident created."));
        assert!(ui.main_text().await.contains("with a link to a fake portal."));
    }
    let incidents = ui.list_of("incidents").await;
    assert!(has(&incidents, amber_title) && has(&incidents, red_title), "{incidents:?}");
    ui.shot("incidents-list").await;
    ui.goto("/objects/incidents?tlp=RED").await;
    let red = ui.listed().await;
    assert!(has(&red, red_title) && !has(&red, amber_title), "{red:?}");
    ui.goto("/objects/incidents?q=phishing+wave").await;
    assert_eq!(ui.listed().await, vec![amber_title.to_owned()]);

    // An API token: its secret is shown once; it can be revoked.
    ui.goto("/admin/tokens").await;
    ui.check_page().await;
    ui.find("#t-name").await.send_keys("firewall log shipper").await.unwrap();
    ui.find("#t-scopes").await.clear().await.unwrap();
    ui.find("#t-scopes").await.send_keys("events:write").await.unwrap();
    ui.c.find(Locator::XPath("//button[normalize-space()='Create token']")).await.unwrap().click().await.unwrap();
    ui.wait_until("the new token", async |ui: &Ui| ui.exists("#secret").await).await;
    let secret = ui.find("#secret").await.prop("value").await.unwrap().unwrap();
    assert!(secret.starts_with("ngb_"), "{secret}");
    ui.shot("token-secret").await;
    ui.c.find(Locator::Css("button[aria-label='Revoke firewall log shipper']")).await.unwrap().click().await.unwrap();
    ui.wait_until("the revocation", async |ui: &Ui| ui.path().await == "/admin/tokens?revoked=1").await;
    let r = crate::common::client().get(server.url("/api/v1/me")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status(), 401, "a revoked token no longer works");

    // An account created by the security lead can sign in.
    ui.goto("/admin/users").await;
    ui.check_page().await;
    ui.find("#u-role").await.select_by_value("org_reporter").await.unwrap();
    ui.find("#u-username").await.send_keys("mofa.reporter2").await.unwrap();
    ui.find("#u-name").await.send_keys("Zara Khan (Foreign Affairs)").await.unwrap();
    ui.find("#u-password").await.send_keys("correct horse battery staple").await.unwrap();
    ui.c.find(Locator::XPath("//button[normalize-space()='Create account']")).await.unwrap().click().await.unwrap();
    ui.wait_until("the new account", async |ui: &Ui| ui.path().await.starts_with("/admin/users?created=")).await;
    assert!(ui.main_text().await.contains("Account mofa.reporter2 created."));
    ui.shot("users").await;

    // Signing out ends the session.
    ui.sign_out().await;
    assert!(ui.main_text().await.contains("You have signed out."));
    ui.goto("/").await;
    assert!(ui.path().await.starts_with("/login"));

    ui.sign_in("mofa.reporter2", "correct horse battery staple").await;
    assert_eq!(ui.path().await, "/");
    let incidents = ui.list_of("incidents").await;
    assert!(has(&incidents, amber_title) && !has(&incidents, red_title), "{incidents:?}");

    // nCERT sees the new AMBER incident reported up, not the RED one that names nobody else.
    ui.sign_in_as(&user("national.analyst")).await;
    let incidents = ui.list_of("incidents").await;
    assert!(has(&incidents, amber_title), "{incidents:?}");
    assert!(!has(&incidents, red_title), "{incidents:?}");
    ui.goto("/").await;
    assert_eq!(ui.count("incidents").await, 6);

    ui.c.close().await.unwrap();
    drop(driver);
    server.stop().await;
}

/// An `application/x-www-form-urlencoded` body.
fn form_body(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// What needs no browser: security headers, redirects, CSRF, hidden objects, assets.
#[tokio::test]
async fn ui_over_http() {
    let server = TestServer::start(Backend::Sqlite).await;
    assert_eq!(server.backend, Backend::Sqlite);
    let users = demo::seed(server.store()).await.unwrap();
    let plain = {
        crate::common::tls_provider();
        reqwest::Client::builder()
    }
    .redirect(reqwest::redirect::Policy::none())
    .build()
    .unwrap();

    // Pages without a session redirect to the sign-in page; every answer carries the headers.
    let r = plain.get(server.url("/objects/incidents")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=/objects/incidents");
    let r = plain.get(server.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("http"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let r = plain.get(server.url("/no/such/page")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.text().await.unwrap().contains("<h1>Not found</h1>"));
    let r = plain.get(server.url("/assets/nigehban.css")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    // A `next` that leaves the site is ignored.
    let r = plain.get(server.url("/login?next=//evil.example/")).send().await.unwrap();
    assert!(!r.text().await.unwrap().contains("evil.example"));

    // Sign in through the form.
    let lead = users.iter().find(|u| u.username == "mofa.lead").unwrap();
    let r = plain
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("username", lead.username.as_str()), ("password", &lead.password), ("next", "/tree")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/tree");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let get = |path: &str| plain.get(server.url(path)).header("cookie", &cookie).send();
    let page = get("/objects/incidents").await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    // A form without the session's CSRF token changes nothing.
    let post = |path: &str, form: Vec<(&'static str, String)>| {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        plain
            .post(server.url(path))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&pairs))
            .send()
    };
    let r = post("/objects/incidents", vec![("title", "forged".into()), ("tlp", "AMBER".into())]).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = post("/logout", vec![("csrf", "wrong".into())]).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(get("/").await.unwrap().status(), 200, "still signed in");
    let r = post("/objects/incidents", vec![("csrf", csrf.clone()), ("title", "".into()), ("tlp", "AMBER".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("Give the incident a title."));
    let r = post(
        "/objects/incidents",
        vec![("csrf", csrf.clone()), ("title", "Made over HTTP".into()), ("tlp", "GREEN".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/objects/incidents/"), "{location}");
    assert!(get(&location).await.unwrap().text().await.unwrap().contains("TLP:GREEN"));
    // What users write is escaped.
    let r = post(
        "/objects/incidents",
        vec![("csrf", csrf.clone()), ("title", "<script>alert(1)</script>".into()), ("tlp", "AMBER".into())],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let list = get("/objects/incidents").await.unwrap().text().await.unwrap();
    assert!(list.contains("script&#62;alert(1)&#60;/script") && !list.contains("<script>"), "{list}");

    // Hidden objects and organisations are not found; malformed identifiers too.
    let sogc = object_id(&server, "national.analyst", SOGC_AMBER).await;
    for path in [
        format!("/objects/incidents/{sogc}"),
        format!("/objects/alerts/{sogc}"),
        "/objects/incidents/not-a-uuid".to_owned(),
        "/objects/widgets".to_owned(),
        format!("/orgs/{}", users.iter().find(|u| u.username == "telecom.lead").unwrap().organisation_id),
    ] {
        let r = get(&path).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains("<h1>Not found</h1>") && !body.contains(SOGC_AMBER), "{path}");
    }
    // A security lead reads its organisation's part of the audit log.
    let r = get("/audit").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Actions by Ministry of Foreign Affairs"));

    // Signing out with the session's token works; the session is gone.
    let r = post("/logout", vec![("csrf", csrf)]).await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?signed_out=1");
    let r = get("/").await.unwrap();
    assert_eq!(r.status(), 303);

    // Repeated wrong passwords lock the account; the form says so.
    let auditor = users.iter().find(|u| u.username == "auditor").unwrap();
    let login = |password: &str| {
        plain
            .post(server.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("username", "auditor"), ("password", password)]))
            .send()
    };
    for _ in 0..5 {
        let r = login("wrong password, again").await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.text().await.unwrap().contains("Wrong user name or password."));
    }
    let r = login(&auditor.password).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("This account is locked"));
    server.stop().await;
}
