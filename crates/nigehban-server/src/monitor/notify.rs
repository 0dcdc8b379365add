//! Alert notifications by e-mail (SMTP) and webhook.
//!
//! The store keeps a durable outbox: the transaction that creates an alert adds its
//! notification (`nigehban_store`'s `notify.rs`), so an alert is notified once, after a crash
//! too. This task polls the outbox on every node that runs monitoring (claims are leases, so
//! nodes share the work), and for each new alert at or above the configured level:
//! - e-mails each e-mail address among the owner organisation's profile contacts (and, when
//!   `parent_certs` is set, those of the CERTs directly above it), one message per recipient;
//! - posts JSON to the webhook configured for the organisation (by short name) and to the
//!   default webhook, signed with HMAC-SHA256 over `<timestamp>.<body>` with the webhook's
//!   secret (`X-Nigehban-Signature: sha256=<hex>`, `X-Nigehban-Timestamp: <unix seconds>`).
//!
//! Messages carry the alert's TLP label first, its rule, level, ATT&CK tags, entity, count and
//! first sighting, and a link when a public URL is configured; never event records. TLP:RED
//! alerts are not sent (only their named recipients may see them). A target that fails is tried
//! again with a back-off that doubles; targets already reached are not reached again; after the
//! last attempt the notification is given up and its last error kept in the outbox. Secrets
//! (the SMTP password, webhook keys) come from environment variables named in the
//! configuration, never from the file, and are never logged.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use nigehban_policy::Tlp;
use nigehban_store::{AlertDetails, ClaimedNotification, FailOutcome, Finished, NotifyRetry, Org, Store};
use serde::Deserialize;

use super::Monitor;

/// Notifications claimed at once (sent concurrently).
const BATCH: u32 = 8;
/// How long a claim lasts: longer than a notification can take (each target's timeout, in
/// turn); a node that stops holding claims delays them this long.
const LEASE: Duration = Duration::from_secs(15 * 60);
/// The longest wait between two attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(3600);
/// The longest text taken from an alert's fields into a message.
const MAX_FIELD_CHARS: usize = 300;

/// A secret read from the environment: never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The `monitoring.notify` section: who is told of new alerts, and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The lowest level notified: informational, low, medium, high (default) or critical.
    #[serde(default = "default_min_level")]
    pub min_level: String,
    /// The server's address as users reach it (`https://nigehban.example`): messages link to
    /// `<public_url>/alerts/<id>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Also e-mail the contacts of the CERTs directly above the organisation.
    #[serde(default)]
    pub parent_certs: bool,
    /// E-mail through this SMTP server (no e-mail without it).
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// A webhook told of every alert (the CERT's own ticketing or chat, for instance).
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Per organisation (short name): its own webhook.
    #[serde(default)]
    pub org_webhooks: HashMap<String, WebhookConfig>,
    /// Attempts before a notification is given up (default 8).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Seconds before the first retry; the wait doubles with each failure, up to an hour
    /// (default 60).
    #[serde(default = "default_retry_seconds")]
    pub retry_seconds: f64,
    /// Seconds between looks at the outbox (default 5).
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: f64,
    /// Alerts older than this many hours when first tried are not sent (so turning
    /// notifications on does not send every alert of the past; default 24).
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: u64,
}

fn default_min_level() -> String {
    "high".into()
}
fn default_max_attempts() -> u32 {
    8
}
fn default_retry_seconds() -> f64 {
    60.0
}
fn default_poll_seconds() -> f64 {
    5.0
}
fn default_max_age_hours() -> u64 {
    24
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            min_level: default_min_level(),
            public_url: None,
            parent_certs: false,
            smtp: None,
            webhook: None,
            org_webhooks: HashMap::new(),
            max_attempts: default_max_attempts(),
            retry_seconds: default_retry_seconds(),
            poll_seconds: default_poll_seconds(),
            max_age_hours: default_max_age_hours(),
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// No encryption (a relay on the same host or network only; no password is sent).
    Plain,
    /// STARTTLS, required (default; port 587).
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Tls,
}

/// The SMTP server alerts are e-mailed through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 25 (plain), 587 (starttls), 465 (tls).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    /// The sender: `Nigehban <nigehban@cert.example>`.
    pub from: String,
    /// Authenticate as this user, with the password in `password_env`.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The password (read from `password_env`; never from the file).
    #[serde(skip)]
    pub password: Option<Secret>,
    /// CA certificates (PEM) trusted besides the system's, for a relay with a private CA.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// The name given in EHLO (default: the address literal).
    #[serde(default)]
    pub hello_name: Option<String>,
    /// Seconds each SMTP command may take (default 30).
    #[serde(default = "default_smtp_timeout")]
    pub timeout_seconds: u64,
}

fn default_smtp_timeout() -> u64 {
    30
}

/// A webhook: JSON is posted to `url`, signed with the secret in `secret_env`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…` (plain `http://` is allowed, with a warning).
    pub url: String,
    /// The environment variable that holds the HMAC-SHA256 key.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The key (read from `secret_env`; never from the file).
    #[serde(skip)]
    pub secret: Option<Secret>,
}

/// A notification setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("monitoring.notify.{field}: {message}")]
pub struct NotifyConfigError {
    pub field: String,
    pub message: String,
}

fn config_error(field: impl Into<String>, message: impl Into<String>) -> NotifyConfigError {
    NotifyConfigError { field: field.into(), message: message.into() }
}

impl NotifyConfig {
    /// Reads the secrets the configuration names from `env` (those not set already) and
    /// checks every setting, building the SMTP and HTTP clients once: call it at start, so a
    /// mistake stops the server rather than its notifications.
    pub fn prepare(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), NotifyConfigError> {
        self.read_secrets(env)?;
        Sender::new(self).map(|_| ())
    }

    /// Reads the secrets not set already from `env`.
    fn read_secrets(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), NotifyConfigError> {
        let read = |field: String, var: &str| {
            env(var)
                .filter(|v| !v.is_empty())
                .map(Secret)
                .ok_or_else(|| config_error(field, format!("the environment variable {var} is not set")))
        };
        if let Some(smtp) = &mut self.smtp
            && smtp.password.is_none()
            && let Some(var) = &smtp.password_env
        {
            smtp.password = Some(read("smtp.password_env".into(), var)?);
        }
        let hooks = self.webhook.iter_mut().map(|w| ("webhook".to_owned(), w));
        let by_org = self.org_webhooks.iter_mut().map(|(org, w)| (format!("org_webhooks.{org}"), w));
        for (field, w) in hooks.chain(by_org) {
            if w.secret.is_none() {
                let Some(var) = &w.secret_env else {
                    return Err(config_error(
                        format!("{field}.secret_env"),
                        "a webhook needs a secret (the environment variable holding the key its receiver checks \
                         signatures with)",
                    ));
                };
                w.secret = Some(read(format!("{field}.secret_env"), var)?);
            }
        }
        Ok(())
    }
}

/// `informational` … `critical` as 0 … 4.
fn level_rank(name: &str) -> Option<i64> {
    ["informational", "low", "medium", "high", "critical"]
        .iter()
        .position(|l| l.eq_ignore_ascii_case(name))
        .map(|i| i as i64)
}

fn seconds(field: &str, s: f64) -> Result<Duration, NotifyConfigError> {
    Duration::try_from_secs_f64(s).map_err(|_| config_error(field, format!("{s} is not a number of seconds")))
}

/// A webhook ready to post to.
struct Webhook {
    /// `webhook:default` or `webhook:<org short name>`: the target's name in the outbox.
    key: String,
    url: reqwest::Url,
    secret: Secret,
}

/// The clients and settings the task sends with.
struct Sender {
    min_rank: i64,
    public_url: Option<String>,
    parent_certs: bool,
    max_age: Duration,
    poll: Duration,
    retry: NotifyRetry,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    http: reqwest::Client,
    default_hook: Option<Webhook>,
    org_hooks: HashMap<String, Webhook>,
}

impl Sender {
    fn new(c: &NotifyConfig) -> Result<Sender, NotifyConfigError> {
        let min_rank = level_rank(&c.min_level).ok_or_else(|| {
            config_error("min_level", format!("{:?} is not informational, low, medium, high or critical", c.min_level))
        })?;
        let public_url = match &c.public_url {
            None => None,
            Some(u) => {
                let parsed = reqwest::Url::parse(u).map_err(|e| config_error("public_url", format!("{u:?}: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(config_error("public_url", format!("{u:?} is not an http(s) URL")));
                }
                Some(u.trim_end_matches('/').to_owned())
            }
        };
        let retry = NotifyRetry {
            max_attempts: c.max_attempts.max(1),
            first_delay: seconds("retry_seconds", c.retry_seconds)?,
            max_delay: MAX_RETRY_WAIT,
        };
        let poll = seconds("poll_seconds", c.poll_seconds)?.max(Duration::from_millis(50));
        let smtp = c.smtp.as_ref().map(smtp_transport).transpose()?;
        let http = http_client().map_err(|e| config_error("webhook", format!("cannot set up the HTTP client: {e}")))?;
        let hook = |key: String, field: &str, w: &WebhookConfig| -> Result<Webhook, NotifyConfigError> {
            let url = reqwest::Url::parse(&w.url).map_err(|e| config_error(format!("{field}.url"), e.to_string()))?;
            if !matches!(url.scheme(), "https" | "http") {
                return Err(config_error(format!("{field}.url"), format!("{}: is not http(s)", url.scheme())));
            }
            let secret = w.secret.clone().ok_or_else(|| {
                config_error(format!("{field}.secret_env"), "the webhook's key was not read (no secret_env?)")
            })?;
            Ok(Webhook { key, url, secret })
        };
        let default_hook = c.webhook.as_ref().map(|w| hook("webhook:default".into(), "webhook", w)).transpose()?;
        let mut org_hooks = HashMap::new();
        for (org, w) in &c.org_webhooks {
            org_hooks.insert(org.clone(), hook(format!("webhook:{org}"), &format!("org_webhooks.{org}"), w)?);
        }
        Ok(Sender {
            min_rank,
            public_url,
            parent_certs: c.parent_certs,
            max_age: Duration::from_secs(c.max_age_hours.saturating_mul(3600)),
            poll,
            retry,
            smtp,
            http,
            default_hook,
            org_hooks,
        })
    }
}

fn smtp_transport(c: &SmtpConfig) -> Result<(AsyncSmtpTransport<Tokio1Executor>, Mailbox), NotifyConfigError> {
    let from: Mailbox = c.from.parse().map_err(|e| config_error("smtp.from", format!("{:?}: {e}", c.from)))?;
    let port = c.port.unwrap_or(match c.security {
        SmtpSecurity::Plain => 25,
        SmtpSecurity::Starttls => 587,
        SmtpSecurity::Tls => 465,
    });
    let tls = || -> Result<TlsParameters, NotifyConfigError> {
        let mut p = TlsParameters::builder(c.host.clone());
        if let Some(path) = &c.ca_cert {
            let pem = std::fs::read(path)
                .map_err(|e| config_error("smtp.ca_cert", format!("cannot read {}: {e}", path.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| config_error("smtp.ca_cert", format!("{}: {e}", path.display())))?;
            p = p.add_root_certificate(cert);
        }
        p.build_rustls().map_err(|e| config_error("smtp", format!("TLS: {e}")))
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(c.host.clone())
        .port(port)
        .timeout(Some(Duration::from_secs(c.timeout_seconds.max(1))));
    b = match c.security {
        SmtpSecurity::Plain => b.tls(Tls::None),
        SmtpSecurity::Starttls => b.tls(Tls::Required(tls()?)),
        SmtpSecurity::Tls => b.tls(Tls::Wrapper(tls()?)),
    };
    match (&c.username, &c.password) {
        (Some(_), _) if c.security == SmtpSecurity::Plain => {
            return Err(config_error(
                "smtp.username",
                "authentication needs security: starttls or tls (a password is not sent in clear)",
            ));
        }
        (Some(user), Some(password)) => {
            b = b.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        (Some(_), None) => {
            return Err(config_error("smtp.password_env", "a username needs a password (password_env)"));
        }
        (None, Some(_)) => return Err(config_error("smtp.username", "a password needs a username")),
        (None, None) => {}
    }
    if let Some(name) = &c.hello_name {
        b = b.hello_name(ClientId::Domain(name.clone()));
    }
    Ok((b.build(), from))
}

/// An HTTP client for webhooks: rustls with ring and the platform's trust store (as the rest
/// of the server; no process-wide provider needed), no redirects (a signed alert goes where it
/// was configured to, nowhere else).
fn http_client() -> Result<reqwest::Client, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("nigehban/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// The e-mail address in a contact: `Name <addr>`, `addr`, `addr (SOC)`, `mailto:addr`;
/// `None` for a phone number or anything else without one.
pub(crate) fn email_of(contact: &str) -> Option<Address> {
    let c = contact.trim();
    if let Ok(m) = c.parse::<Mailbox>() {
        return Some(m.email);
    }
    if let (Some(a), Some(b)) = (c.rfind('<'), c.rfind('>'))
        && a < b
        && let Ok(addr) = c[a + 1..b].trim().trim_start_matches("mailto:").parse::<Address>()
    {
        return Some(addr);
    }
    c.split(|ch: char| ch.is_whitespace() || matches!(ch, ',' | ';' | '(' | ')' | '<' | '>' | '"' | '\'' | '[' | ']'))
        .filter(|w| w.contains('@'))
        .find_map(|w| w.trim_start_matches("mailto:").trim_matches(|c: char| c == '.' || c == ':').parse().ok())
}

/// Text from an alert's fields (which come from logs) made safe for a subject or a line: no
/// control characters, bounded length.
fn clean(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_FIELD_CHARS)
        .collect::<String>()
        .trim()
        .to_owned();
    if s.chars().count() > MAX_FIELD_CHARS {
        out.push('…');
    }
    out
}

/// TLP 2.0's short definition of each level (FIRST).
fn tlp_meaning(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "Recipients can spread this to the world, there is no limit on disclosure.",
        Tlp::Green => "Limited disclosure, recipients can spread this within their community.",
        Tlp::Amber => {
            "Limited disclosure, recipients can only spread this on a need-to-know basis within their \
             organization and its clients."
        }
        Tlp::AmberStrict => {
            "Limited disclosure, recipients can only spread this on a need-to-know basis within their \
             organization only."
        }
        Tlp::Red => "For the eyes and ears of individual recipients only, no further disclosure.",
    }
}

/// `attack.t1033` → `T1033`, `attack.discovery` → `discovery`; other tags are not ATT&CK's.
fn attack_tags(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| t.strip_prefix("attack."))
        .map(|t| {
            let technique = t.len() >= 5
                && t.as_bytes()[0].eq_ignore_ascii_case(&b't')
                && t[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.');
            if technique { t.to_ascii_uppercase() } else { clean(t) }
        })
        .collect()
}

fn time(micros: i64) -> String {
    let t = nigehban_store::timestamp(micros);
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

/// What is sent about one alert.
struct Content {
    subject: String,
    text: String,
    json: String,
}

fn content(n: &ClaimedNotification, d: &AlertDetails, org: &Org, public_url: Option<&str>) -> Content {
    let link = public_url.map(|base| format!("{base}/alerts/{}", n.alert_id));
    let attack = attack_tags(&d.tags);
    let (rule, entity, org_name) = (clean(&d.rule_title), clean(&d.entity), clean(&org.name));
    let subject = format!("[{}] {} alert: {rule} — {org_name} ({entity})", n.tlp, clean(&d.level).to_uppercase());
    let mut text = format!("{}\n{}\n\n", n.tlp, tlp_meaning(n.tlp));
    text.push_str(&format!("Alert:        {rule}\n"));
    text.push_str(&format!("Level:        {}\n", clean(&d.level)));
    text.push_str(&format!("Organisation: {org_name} ({})\n", clean(&org.short_name)));
    text.push_str(&format!("Entity:       {entity}\n"));
    text.push_str(&format!("Rule:         {} ({})\n", clean(&d.rule_id), clean(&d.engine)));
    let attack_line = if attack.is_empty() { "none given".to_owned() } else { attack.join(", ") };
    text.push_str(&format!("ATT&CK:       {attack_line}\n"));
    text.push_str(&format!("Count:        {} when this was sent\n", d.count));
    text.push_str(&format!("First seen:   {}\n", time(d.first_seen)));
    if let Some(link) = &link {
        text.push_str(&format!("Open:         {link}\n"));
    }
    text.push_str(
        "\nLater matches add to this alert's count and are not notified again. The matching events \
         are on the platform, for those allowed to see them.\n",
    );
    text.push_str(&format!("\n-- \nNigehban, for {org_name}. Alert {}.\n", n.alert_id));
    let json = serde_json::json!({
        "event": "alert.created",
        "tlp": n.tlp.to_string(),
        "alert": {
            "id": n.alert_id,
            "url": link,
            "title": n.title,
            "rule_id": d.rule_id,
            "rule_title": d.rule_title,
            "engine": d.engine,
            "level": d.level,
            "level_rank": d.level_rank,
            "tags": d.tags,
            "attack": attack,
            "entity": d.entity,
            "count": d.count,
            "first_seen": time(d.first_seen),
            "last_seen": time(d.last_seen),
            "created_at": time(n.created_at),
        },
        "organisation": { "id": org.id, "short_name": org.short_name, "name": org.name },
    })
    .to_string();
    Content { subject, text, json }
}

/// `sha256=<hex>` of HMAC-SHA256(key, `<timestamp>.<body>`).
pub(crate) fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(format!("{timestamp}.").as_bytes());
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

/// Where one notification goes.
enum Target<'a> {
    Mail(Address),
    Hook(&'a Webhook),
}

impl Target<'_> {
    fn key(&self) -> String {
        match self {
            Target::Mail(a) => format!("mail:{a}"),
            Target::Hook(h) => h.key.clone(),
        }
    }
}

impl Sender {
    async fn send(&self, target: &Target<'_>, n: &ClaimedNotification, c: &Content) -> Result<(), String> {
        match target {
            Target::Mail(to) => {
                let Some((smtp, from)) = &self.smtp else { return Err("no SMTP server is configured".into()) };
                let domain = from.email.domain().to_owned();
                let mut message = Message::builder()
                    .from(from.clone())
                    .to(Mailbox::new(None, to.clone()))
                    .subject(c.subject.clone())
                    .message_id(Some(format!("<alert.{}@{domain}>", n.alert_id)))
                    .date_now()
                    .header(ContentType::TEXT_PLAIN)
                    .body(c.text.clone())
                    .map_err(|e| format!("building the message: {e}"))?;
                // RFC 3834: no vacation or other automatic replies.
                message.headers_mut().insert_raw(HeaderValue::new(
                    HeaderName::new_from_ascii_str("Auto-Submitted"),
                    "auto-generated".into(),
                ));
                smtp.send(message).await.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
            }
            Target::Hook(h) => {
                let ts = jiff::Timestamp::now().as_second();
                let response = self
                    .http
                    .post(h.url.clone())
                    .header("content-type", "application/json")
                    .header("x-nigehban-event", "alert.created")
                    .header("x-nigehban-delivery", n.alert_id.to_string())
                    .header("x-nigehban-timestamp", ts.to_string())
                    .header("x-nigehban-signature", signature(h.secret.expose().as_bytes(), ts, c.json.as_bytes()))
                    .body(c.json.clone())
                    .send()
                    .await
                    // The URL may carry a token of its own: errors do not repeat it.
                    .map_err(|e| format!("HTTP: {}", e.without_url()))?;
                let status = response.status();
                if status.is_success() { Ok(()) } else { Err(format!("HTTP status {status}")) }
            }
        }
    }
}

/// Runs until `shutdown` says stop, when monitoring's configuration has notifications.
pub(crate) async fn run(monitor: Arc<Monitor>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(mut config) = monitor.config.notify.clone() else { return };
    let sender = match config.read_secrets(|var| std::env::var(var).ok()).and_then(|()| Sender::new(&config)) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(message = "Alert notifications are off: their configuration does not work.", error = %e);
            return;
        }
    };
    for hook in sender.default_hook.iter().chain(sender.org_hooks.values()) {
        if hook.url.scheme() == "http" {
            tracing::warn!(
                message = "A notification webhook is plain HTTP: alerts travel to it unencrypted.",
                webhook = %hook.key
            );
        }
    }
    for short in sender.org_hooks.keys() {
        if let Ok(None) = monitor.store.org_by_short_name(short).await {
            tracing::warn!(message = "A notification webhook names an organisation that does not exist.", org = %short);
        }
    }
    loop {
        let mut full = false;
        match monitor.store.claim_notifications(BATCH, LEASE).await {
            Ok(batch) => {
                full = batch.len() == BATCH as usize;
                let mut running = tokio::task::JoinSet::new();
                for n in batch {
                    let (monitor, sender) = (monitor.clone(), sender.clone());
                    running.spawn(async move { handle(&monitor, &sender, n).await });
                }
                while let Some(done) = running.join_next().await {
                    if let Err(e) = done {
                        tracing::error!(message = "A notification task failed; it is tried again after its lease.", error = %e);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(message = "Cannot read the notification outbox; trying again.", error = %e);
            }
        }
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(sender.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Why an alert is not sent at all, if it is not.
fn skip_reason(sender: &Sender, n: &ClaimedNotification, d: Option<&AlertDetails>) -> Option<String> {
    let Some(d) = d else { return Some("the alert has no monitoring details".into()) };
    if n.tlp == Tlp::Red {
        return Some("TLP:RED: only the alert's named recipients may see it".into());
    }
    if d.level_rank < sender.min_rank {
        return Some(format!("level {} is below the notification minimum", d.level));
    }
    let age = nigehban_store::timestamp(n.created_at);
    let age = jiff::Timestamp::now().duration_since(age).unsigned_abs();
    if n.attempts == 0 && n.delivered.is_empty() && age > sender.max_age {
        return Some(format!("the alert was {} hours old when notifications first saw it", age.as_secs() / 3600));
    }
    None
}

/// The e-mail addresses among the contacts of `org` (and its parent CERTs, if configured).
async fn recipients(store: &Store, sender: &Sender, org: &Org) -> Result<Vec<Address>, nigehban_store::StoreError> {
    let mut contacts = org.profile.contacts.clone();
    if sender.parent_certs {
        for p in &org.parents {
            if let Some(parent) = store.org(*p).await? {
                contacts.extend(parent.profile.contacts);
            }
        }
    }
    let mut seen = HashSet::new();
    Ok(contacts.iter().filter_map(|c| email_of(c)).filter(|a| seen.insert(a.to_string().to_lowercase())).collect())
}

async fn handle(monitor: &Monitor, sender: &Sender, n: ClaimedNotification) {
    let store = &monitor.store;
    let m = &monitor.metrics;
    let finish = |how: Finished| async move {
        if let Err(e) = store.finish_notification(n.id, n.claim, how).await {
            tracing::warn!(message = "Cannot record a notification's end; it is sent again after its lease.", alert = %n.alert_id, error = %e);
        }
    };
    if let Some(why) = skip_reason(sender, &n, n.details.as_ref()) {
        m.notify_skipped.fetch_add(1, Ordering::Relaxed);
        finish(Finished::Skipped(why)).await;
        return;
    }
    let Some(d) = &n.details else { return };
    let org = match store.org(n.owner).await {
        Ok(Some(org)) => org,
        Ok(None) => {
            m.notify_skipped.fetch_add(1, Ordering::Relaxed);
            finish(Finished::Skipped("the alert's organisation does not exist".into())).await;
            return;
        }
        Err(e) => return fail(monitor, sender, &n, &format!("reading the organisation: {e}")).await,
    };
    let mut targets = Vec::new();
    if sender.smtp.is_some() {
        match recipients(store, sender, &org).await {
            Ok(list) => targets.extend(list.into_iter().map(Target::Mail)),
            Err(e) => return fail(monitor, sender, &n, &format!("reading the contacts: {e}")).await,
        }
    }
    targets.extend(sender.org_hooks.get(&org.short_name).map(Target::Hook));
    targets.extend(sender.default_hook.as_ref().map(Target::Hook));
    if targets.is_empty() {
        m.notify_skipped.fetch_add(1, Ordering::Relaxed);
        let why = format!("no e-mail contact or webhook for {}", org.short_name);
        finish(Finished::Skipped(why)).await;
        return;
    }
    let c = content(&n, d, &org, sender.public_url.as_deref());
    let mut errors = Vec::new();
    for t in &targets {
        let key = t.key();
        if n.delivered.contains(&key) {
            continue;
        }
        match sender.send(t, &n, &c).await {
            Ok(()) => {
                m.notify_sent.fetch_add(1, Ordering::Relaxed);
                match store.notification_delivered(n.id, n.claim, &key).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(message = "A notification's claim ran out while it was being sent.", alert = %n.alert_id);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(message = "Cannot record a delivered notification.", alert = %n.alert_id, error = %e)
                    }
                }
            }
            Err(e) => {
                m.notify_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = "A notification could not be delivered.", alert = %n.alert_id, target = %key, error = %e);
                errors.push(format!("{key}: {e}"));
            }
        }
    }
    if errors.is_empty() {
        tracing::info!(message = "Alert notified.", alert = %n.alert_id, org = %org.short_name, targets = targets.len());
        finish(Finished::Sent).await;
    } else {
        fail(monitor, sender, &n, &errors.join("; ")).await;
    }
}

async fn fail(monitor: &Monitor, sender: &Sender, n: &ClaimedNotification, error: &str) {
    match monitor.store.fail_notification(n.id, n.claim, error, &sender.retry).await {
        Ok(Some(FailOutcome::GaveUp)) => {
            monitor.metrics.notify_gave_up.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                message = "An alert's notification was given up after its last attempt.",
                alert = %n.alert_id,
                attempts = n.attempts + 1,
                error = %error,
            );
        }
        Ok(Some(FailOutcome::RetryAt(at))) => {
            tracing::info!(message = "An alert's notification will be tried again.", alert = %n.alert_id, at = %time(at));
        }
        Ok(None) => {
            tracing::warn!(message = "A notification's claim ran out while it was being sent.", alert = %n.alert_id)
        }
        Err(e) => tracing::warn!(message = "Cannot record a failed notification.", alert = %n.alert_id, error = %e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_yield_their_email_addresses_only() {
        let got = |c: &str| email_of(c).map(|a| a.to_string());
        assert_eq!(got("SOC Desk <soc@mofa.example>").as_deref(), Some("soc@mofa.example"));
        assert_eq!(got("soc@mofa.example").as_deref(), Some("soc@mofa.example"));
        assert_eq!(got("  cert@pk.example (24/7 desk)").as_deref(), Some("cert@pk.example"));
        assert_eq!(got("mailto:ciso@mofa.example").as_deref(), Some("ciso@mofa.example"));
        assert_eq!(got("Ali Raza, CISO: <ali.raza@mofa.example>").as_deref(), Some("ali.raza@mofa.example"));
        assert_eq!(got("+92 51 9210335"), None);
        assert_eq!(got("Duty officer +92-300-1234567"), None);
        assert_eq!(got("not an @ address"), None);
        assert_eq!(got(""), None);
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_and_body() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let body = b"do ya want for nothing?";
        // The signed text is "<timestamp>.<body>": with the timestamp "what" it is not a number;
        // the vector's data is split so that the function's framing reproduces it exactly.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let expected = hex::encode(ring::hmac::sign(&key, b"1700000000.do ya want for nothing?").as_ref());
        assert_eq!(signature(b"Jefe", 1_700_000_000, body), format!("sha256={expected}"));
        let rfc = ring::hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(rfc.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "ring's HMAC-SHA256 is RFC 4231's"
        );
        assert_ne!(signature(b"Jefe", 1_700_000_001, body), signature(b"Jefe", 1_700_000_000, body));
    }

    #[test]
    fn text_from_logs_cannot_break_a_subject() {
        assert_eq!(clean("ws1\r\nBcc: x@y"), "ws1  Bcc: x@y");
        assert_eq!(clean(&"a".repeat(400)).chars().count(), MAX_FIELD_CHARS + 1);
    }

    #[test]
    fn attack_tags_read_as_techniques_and_tactics() {
        let tags = ["attack.discovery", "attack.t1033", "attack.t1059.001", "cve.2021-44228"].map(String::from);
        assert_eq!(attack_tags(&tags), ["discovery", "T1033", "T1059.001"]);
    }

    #[test]
    fn settings_are_checked_at_start() {
        let env = |_: &str| None;
        let mut c = NotifyConfig { min_level: "severe".into(), ..NotifyConfig::default() };
        assert!(c.prepare(env).unwrap_err().to_string().contains("min_level"));
        let hook = WebhookConfig { url: "https://soar.example/hook".into(), secret_env: None, secret: None };
        let mut c = NotifyConfig { webhook: Some(hook.clone()), ..NotifyConfig::default() };
        assert!(c.prepare(env).unwrap_err().to_string().contains("webhook.secret_env"));
        let named = WebhookConfig { secret_env: Some("NIGEHBAN_NO_SUCH_VARIABLE".into()), ..hook.clone() };
        let mut c = NotifyConfig { webhook: Some(named), ..NotifyConfig::default() };
        let e = c.prepare(env).unwrap_err().to_string();
        assert!(e.contains("NIGEHBAN_NO_SUCH_VARIABLE is not set"), "{e}");
        let mut c =
            NotifyConfig { webhook: Some(WebhookConfig { url: "ftp://x".into(), ..hook }), ..NotifyConfig::default() };
        c.webhook.as_mut().unwrap().secret = Some(Secret::new("k"));
        assert!(c.prepare(env).unwrap_err().to_string().contains("webhook.url"));
        let smtp = SmtpConfig {
            host: "mail.example".into(),
            port: None,
            security: SmtpSecurity::Plain,
            from: "Nigehban <nigehban@cert.example>".into(),
            username: Some("nigehban".into()),
            password_env: Some("SMTP_PASSWORD".into()),
            password: None,
            ca_cert: None,
            hello_name: None,
            timeout_seconds: 30,
        };
        let mut c = NotifyConfig { smtp: Some(smtp.clone()), ..NotifyConfig::default() };
        let e = c.prepare(|v| (v == "SMTP_PASSWORD").then(|| "pw".to_owned())).unwrap_err().to_string();
        assert!(e.contains("not sent in clear"), "{e}");
        let mut c = NotifyConfig {
            smtp: Some(SmtpConfig { security: SmtpSecurity::Starttls, ..smtp }),
            ..NotifyConfig::default()
        };
        c.prepare(|v| (v == "SMTP_PASSWORD").then(|| "pw".to_owned())).unwrap();
        assert_eq!(c.smtp.as_ref().and_then(|s| s.password.as_ref()), Some(&Secret::new("pw")));
        assert_eq!(format!("{c:?}").matches("pw").count(), 0, "secrets are not printed");
    }
}
