//! The demo's live feed: a steady stream of ordinary events from a few organisations of the demo
//! constituency, with an attack now and then that the built-in rule pack detects, so that a new
//! user sees live alerts within a minute of `nigehban demo`.
//!
//! What flows, per organisation, with current timestamps and plausible names:
//! - Windows events as Winlogbeat sends them (NDJSON): Sysmon process creation of ordinary
//!   programs, Security log-ons on the domain controller and workstations;
//! - Linux `auth.log` and cron over syslog (RFC 5424): public-key SSH log-ons, sudo, cron jobs;
//! - the organisation's web portal access log (combined format);
//! - Zeek `conn` and `dns` records (JSON);
//! - where the organisation has them: Postfix, the Zimbra web client's access log, vCenter's
//!   event stream, Proxmox VE tasks.
//!
//! The attacks ([`Scenario`]): SSH brute force then a log-on and a sudo group change, password
//! spraying against a domain controller, a Windows account takeover ending in Domain Admins,
//! Zimbra exploitation (Autodiscover XXE, mboximport, a web shell), mass deletion of virtual
//! machines in vCenter or Proxmox VE. The first comes 20–30 seconds after the start, then one
//! every one to three minutes, in one organisation each, chosen by a seeded random generator.
//!
//! [`Generator`] is the pure core: a seed and the times it is asked about decide every record,
//! and the attacks (which, where, when, with which records) depend on the seed alone. [`run`]
//! only asks it for the time since its last step, parses the records with the readers of
//! ingest, and stores them through [`Monitor::store`], waiting while monitoring is busy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use nigehban_store::{NewEvent, Store, StoreError};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::json;
use sha2::Digest;
use uuid::Uuid;

use super::parse::{Target, parse};
use super::{IngestRefusal, Monitor};

/// An organisation of the demo tree that the stream feeds.
#[derive(Debug, Clone)]
pub struct DemoSource {
    /// The organisation's id in the store.
    pub org: Uuid,
    /// Its short name (`sogc`, `ntc` …).
    pub short: String,
    profile: &'static Profile,
}

impl DemoSource {
    /// A source for the demo organisation `short` with the id `org`; `None` when the stream has
    /// no profile for that short name.
    pub fn new(org: Uuid, short: &str) -> Option<DemoSource> {
        PROFILES.iter().find(|p| p.short == short).map(|profile| DemoSource { org, short: short.to_owned(), profile })
    }
}

/// The demo organisations the stream feeds, looked up by short name in the store (those
/// missing are left out).
pub async fn sources(store: &Store) -> Result<Vec<DemoSource>, StoreError> {
    let orgs = store.orgs().await?;
    Ok(PROFILES
        .iter()
        .filter_map(|p| orgs.iter().find(|o| o.short_name == p.short).and_then(|o| DemoSource::new(o.id, p.short)))
        .collect())
}

/// How the stream runs.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Decides the attacks (order, times, targets, records) and, with the steps taken, the
    /// ordinary mix.
    pub seed: u64,
    /// Ordinary events per second of event time, over all organisations (about).
    pub events_per_second: u32,
    /// Whether attacks are injected.
    pub attacks: bool,
    /// The first attack comes this long after the start (a random time in the range).
    pub first_attack: (Duration, Duration),
    /// Then one attack every so long (a random time in the range).
    pub attack_every: (Duration, Duration),
    /// Real time between two batches.
    pub tick: Duration,
    /// Seconds of event time per real second (1: real time; more for tests).
    pub speed: u32,
    /// Events of the fed organisations received longer ago than this are deleted (once
    /// detection has passed them); `None` keeps them.
    pub keep_events: Option<Duration>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            seed: 0x6e69_6765_6862_616e,
            events_per_second: 50,
            attacks: true,
            first_attack: (Duration::from_secs(20), Duration::from_secs(30)),
            attack_every: (Duration::from_secs(60), Duration::from_secs(180)),
            tick: Duration::from_secs(1),
            speed: 1,
            keep_events: Some(Duration::from_secs(1800)),
        }
    }
}

/// An attack the stream can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// sshd: a dozen failed passwords for one account from one address, a successful log-on
    /// from it, then `sudo usermod -aG sudo` of a new account.
    SshBruteForce,
    /// Domain controller: failed network log-ons (4625) for many accounts from one address.
    PasswordSpraying,
    /// Domain controller: failed log-ons for one staff account, its network log-on, then a new
    /// account created and added to Domain Admins by it (4625, 4624, 4720, 4728).
    WindowsTakeover,
    /// Zimbra web client: Autodiscover XXE, an mboximport upload, the web shell written by it
    /// (Sysmon for Linux) and its requests.
    ZimbraExploit,
    /// vCenter: a log-on from an unusual address, then a dozen and more virtual machines powered
    /// off and removed by one account.
    VcenterMassDeletion,
    /// Proxmox VE: a dozen guests destroyed (`qmdestroy`) by one account.
    ProxmoxMassDeletion,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::SshBruteForce,
        Scenario::PasswordSpraying,
        Scenario::WindowsTakeover,
        Scenario::ZimbraExploit,
        Scenario::VcenterMassDeletion,
        Scenario::ProxmoxMassDeletion,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::SshBruteForce => "SSH brute force, log-on and sudo group change",
            Scenario::PasswordSpraying => "password spraying against the domain controller",
            Scenario::WindowsTakeover => "Windows account takeover ending in Domain Admins",
            Scenario::ZimbraExploit => "Zimbra exploitation and web shell",
            Scenario::VcenterMassDeletion => "mass deletion of virtual machines in vCenter",
            Scenario::ProxmoxMassDeletion => "mass deletion of guests in Proxmox VE",
        }
    }

    fn fits(self, p: &Profile) -> bool {
        match self {
            Scenario::SshBruteForce | Scenario::PasswordSpraying | Scenario::WindowsTakeover => true,
            Scenario::ZimbraExploit => p.zimbra,
            Scenario::VcenterMassDeletion => p.vcenter,
            Scenario::ProxmoxMassDeletion => p.proxmox,
        }
    }
}

/// An attack that started.
#[derive(Debug, Clone)]
pub struct AttackStarted {
    pub scenario: Scenario,
    pub org: Uuid,
    pub short: String,
    pub at: Timestamp,
    /// The host attacked.
    pub host: String,
}

/// Records of one organisation and source, ready for the readers.
#[derive(Debug, Clone)]
pub struct Batch {
    pub org: Uuid,
    /// The source name (also tells the access log reader which server wrote the log).
    pub source: &'static str,
    /// The reader's format name.
    pub format: &'static str,
    /// The records, one a line.
    pub body: String,
    pub records: usize,
}

/// What one step of the generator gives.
#[derive(Debug, Default)]
pub struct Tick {
    pub batches: Vec<Batch>,
    pub attacks: Vec<AttackStarted>,
}

/// Where a record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stream {
    Winlogbeat,
    LinuxSysmon,
    Syslog,
    Portal,
    Zimbra,
    Zeek,
}

impl Stream {
    fn source(self) -> &'static str {
        match self {
            Stream::Winlogbeat => "winlogbeat",
            Stream::LinuxSysmon => "sysmon-linux",
            Stream::Syslog => "syslog",
            Stream::Portal => "www/access.log",
            // The path tells the access log reader that Zimbra wrote it.
            Stream::Zimbra => "zimbra/access_log",
            Stream::Zeek => "zeek",
        }
    }

    fn format(self) -> &'static str {
        match self {
            Stream::Winlogbeat | Stream::LinuxSysmon | Stream::Zeek => "json",
            Stream::Syslog => "syslog",
            Stream::Portal | Stream::Zimbra => "access",
        }
    }
}

/// One record waiting for its time.
#[derive(Debug, Clone)]
struct Record {
    at: Timestamp,
    seq: u64,
    org: usize,
    stream: Stream,
    line: String,
}

/// An organisation's systems and people, as the stream plays them.
#[derive(Debug)]
struct Profile {
    short: &'static str,
    /// NetBIOS domain name.
    netbios: &'static str,
    /// DNS domain.
    domain: &'static str,
    /// Internal addresses are 10.`net`.x.y.
    net: u8,
    /// Workstation names: prefix and a number.
    ws_prefix: &'static str,
    workstations: usize,
    /// Domain controller (host name).
    dc: &'static str,
    /// Linux servers (host names).
    linux: &'static [&'static str],
    /// The public portal's pages.
    portal: &'static [&'static str],
    /// Which block of [`STAFF`] names its people have.
    staff_block: usize,
    zimbra: bool,
    postfix: bool,
    vcenter: bool,
    proxmox: bool,
    /// Share of the stream (relative).
    weight: u32,
}

const PROFILES: &[Profile] = &[
    Profile {
        short: "sogc",
        netbios: "SOGC",
        domain: "sogc.example",
        net: 20,
        ws_prefix: "SOGC-WS",
        workstations: 60,
        dc: "SOGC-DC01",
        linux: &["scada-hist01", "erp-app01", "erp-db01", "bastion01"],
        portal: &[
            "/",
            "/en/tenders",
            "/en/tenders/2026-117",
            "/en/fuel-prices",
            "/en/careers",
            "/en/about/board",
            "/en/news",
        ],
        staff_block: 0,
        zimbra: false,
        postfix: false,
        vcenter: true,
        proxmox: false,
        weight: 4,
    },
    Profile {
        short: "ntc",
        netbios: "NTC",
        domain: "ntc.example",
        net: 30,
        ws_prefix: "NTC-WS",
        workstations: 80,
        dc: "NTC-DC01",
        linux: &["bss-app01", "noc-mon01", "radius01", "bastion01"],
        portal: &[
            "/",
            "/selfcare/login",
            "/packages/mobile",
            "/packages/broadband",
            "/bill/pay",
            "/support/coverage",
            "/en/store-locator",
        ],
        staff_block: 1,
        zimbra: true,
        postfix: true,
        vcenter: false,
        proxmox: false,
        weight: 5,
    },
    Profile {
        short: "itboard",
        netbios: "ITBOARD",
        domain: "itboard.gov.example",
        net: 40,
        ws_prefix: "ITB-WS",
        workstations: 40,
        dc: "ITB-DC01",
        linux: &["gitlab01", "ci-runner01", "eservices-app01", "bastion01"],
        portal: &["/", "/e-services", "/e-services/status", "/standards/cloud-policy", "/tenders", "/contact"],
        staff_block: 2,
        zimbra: false,
        postfix: false,
        vcenter: false,
        proxmox: true,
        weight: 3,
    },
    Profile {
        short: "mofa",
        netbios: "MOFA",
        domain: "mofa.gov.example",
        net: 50,
        ws_prefix: "MOFA-WS",
        workstations: 50,
        dc: "MOFA-DC01",
        linux: &["visa-app01", "consular-db01", "bastion01"],
        portal: &[
            "/",
            "/en/visa",
            "/en/visa/e-visa/apply",
            "/en/consular/attestation",
            "/en/press-releases",
            "/en/missions",
        ],
        staff_block: 3,
        zimbra: false,
        postfix: false,
        vcenter: false,
        proxmox: false,
        weight: 3,
    },
    Profile {
        short: "mof",
        netbios: "MOF",
        domain: "finance.gov.example",
        net: 60,
        ws_prefix: "MOF-WS",
        workstations: 40,
        dc: "MOF-DC01",
        linux: &["budget-app01", "treasury-db01", "bastion01"],
        portal: &["/", "/budget/2026-27", "/budget/2026-27/documents", "/debt/bulletin", "/press", "/rti"],
        staff_block: 4,
        zimbra: false,
        postfix: true,
        vcenter: false,
        proxmox: false,
        weight: 2,
    },
    Profile {
        short: "moi",
        netbios: "MOI",
        domain: "interior.gov.example",
        net: 70,
        ws_prefix: "MOI-WS",
        workstations: 40,
        dc: "MOI-DC01",
        linux: &["passport-app01", "idcard-db01", "bastion01"],
        portal: &["/", "/passport/appointment", "/passport/status", "/arms-licence", "/notifications", "/contact"],
        staff_block: 5,
        zimbra: false,
        postfix: false,
        vcenter: false,
        proxmox: false,
        weight: 2,
    },
];

/// People per organisation.
const STAFF: usize = 40;

/// Staff accounts are `first.last`, a distinct pair for each person of each organisation.
const FIRST_NAMES: &[&str] = &[
    "ali", "sana", "bilal", "ayesha", "usman", "fatima", "hamza", "zainab", "imran", "mariam", "farhan", "nida",
    "kashif", "rabia", "saad", "hira", "adnan", "amna", "waqas", "sadia", "junaid", "mehwish", "tariq", "komal",
];
const LAST_NAMES: &[&str] = &[
    "raza", "khan", "ahmed", "malik", "tariq", "qureshi", "iqbal", "hussain", "shah", "butt", "javed", "mehmood",
    "anwar", "akhtar", "aslam", "sheikh", "riaz", "latif", "noor", "farooq", "abbas", "jamil", "rashid", "mirza",
];

/// Administrators' and services' accounts on the Linux servers.
const LINUX_ADMINS: &[&str] = &["ansible", "backup", "sysadmin", "deploy"];

/// Ordinary programs (image, command line, parent image) started on workstations.
const PROGRAMS: &[(&str, &str, &str)] = &[
    (
        r"C:\Program Files\Google\Chrome\Application\chrome.exe",
        r#""C:\Program Files\Google\Chrome\Application\chrome.exe" --type=renderer --lang=en-GB"#,
        r"C:\Program Files\Google\Chrome\Application\chrome.exe",
    ),
    (
        r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
        r#""C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" --type=utility --utility-sub-type=network.mojom.NetworkService"#,
        r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE",
        r#""C:\Program Files\Microsoft Office\root\Office16\OUTLOOK.EXE" "#,
        r"C:\Windows\explorer.exe",
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE",
        r#""C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE" /n "C:\Users\Public\Documents\Minutes.docx""#,
        r"C:\Windows\explorer.exe",
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE",
        r#""C:\Program Files\Microsoft Office\root\Office16\EXCEL.EXE" "#,
        r"C:\Windows\explorer.exe",
    ),
    (
        r"C:\Windows\System32\svchost.exe",
        r"C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule",
        r"C:\Windows\System32\services.exe",
    ),
    (r"C:\Windows\System32\taskhostw.exe", r"taskhostw.exe", r"C:\Windows\System32\svchost.exe"),
    (
        r"C:\Windows\System32\RuntimeBroker.exe",
        r"C:\Windows\System32\RuntimeBroker.exe -Embedding",
        r"C:\Windows\System32\svchost.exe",
    ),
    (
        r"C:\Windows\System32\SearchProtocolHost.exe",
        r#""C:\Windows\system32\SearchProtocolHost.exe" Global\UsGthrFltPipeMssGthrPipe1_"#,
        r"C:\Windows\System32\SearchIndexer.exe",
    ),
    (
        r"C:\Windows\System32\backgroundTaskHost.exe",
        r#""C:\Windows\system32\backgroundTaskHost.exe" -ServerName:App.AppXmtcan0h2tfbfy7k9kn8hbxb6dmzz1zh0.mca"#,
        r"C:\Windows\System32\svchost.exe",
    ),
    (r"C:\Windows\System32\notepad.exe", r#""C:\Windows\system32\notepad.exe" "#, r"C:\Windows\explorer.exe"),
    (
        r"C:\Program Files\Microsoft OneDrive\OneDrive.exe",
        r#""C:\Program Files\Microsoft OneDrive\OneDrive.exe" /background"#,
        r"C:\Windows\explorer.exe",
    ),
    (
        r"C:\Users\Public\AppData\Local\Microsoft\Teams\current\Teams.exe",
        r#""C:\Users\Public\AppData\Local\Microsoft\Teams\current\Teams.exe" --type=gpu-process"#,
        r"C:\Users\Public\AppData\Local\Microsoft\Teams\current\Teams.exe",
    ),
    (
        r"C:\Windows\System32\conhost.exe",
        r"\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1",
        r"C:\Windows\System32\svchost.exe",
    ),
    (
        r"C:\Program Files\Adobe\Acrobat DC\Acrobat\Acrobat.exe",
        r#""C:\Program Files\Adobe\Acrobat DC\Acrobat\Acrobat.exe" "C:\Users\Public\Downloads\Circular-2026-41.pdf""#,
        r"C:\Windows\explorer.exe",
    ),
];

/// Outside services workstations talk to (name, address, port, Zeek service).
const DESTINATIONS: &[(&str, &str, u16, &str)] = &[
    ("login.microsoftonline.com", "198.18.10.21", 443, "ssl"),
    ("outlook.office365.com", "198.18.10.34", 443, "ssl"),
    ("teams.microsoft.com", "198.18.10.52", 443, "ssl"),
    ("www.google.com", "198.18.20.4", 443, "ssl"),
    ("fonts.gstatic.com", "198.18.20.17", 443, "ssl"),
    ("www.youtube.com", "198.18.20.36", 443, "ssl"),
    ("ctldl.windowsupdate.com", "198.18.30.9", 80, "http"),
    ("download.windowsupdate.com", "198.18.30.12", 443, "ssl"),
    ("news.example", "198.18.40.80", 443, "ssl"),
    ("epaper.news.example", "198.18.40.81", 443, "ssl"),
    ("www.wikipedia.org", "198.18.50.10", 443, "ssl"),
    ("github.com", "198.18.60.3", 443, "ssl"),
    ("ocsp.digicert.com", "198.18.70.5", 80, "http"),
    ("api.weather.example", "198.18.80.22", 443, "ssl"),
];

/// Browsers of the public visiting portals.
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 13; Redmi Note 12) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];

/// Tools attackers' requests carry.
const ATTACK_AGENTS: &[&str] = &["python-requests/2.31.0", "curl/8.5.0", "Go-http-client/1.1"];

/// The pure core: a seed and the times it is asked about decide every record. The attacks
/// (which, where, when, and their records) depend on the seed alone; the ordinary mix also on
/// how the time is cut into steps.
pub struct Generator {
    seed: u64,
    /// The ordinary mix (and, while one is injected, the attack's records).
    rng: StdRng,
    /// Which attack comes when, and where.
    schedule: StdRng,
    /// Attacks injected so far.
    injected: u64,
    orgs: Vec<DemoSource>,
    events_per_second: u32,
    attacks: bool,
    attack_every: (Duration, Duration),
    next_attack: Timestamp,
    rotation: Vec<Scenario>,
    pending: Vec<Record>,
    seq: u64,
    /// Carried fractions of events per organisation.
    carry: Vec<f64>,
}

impl Generator {
    /// A generator over `orgs` whose stream starts at `start`.
    pub fn new(orgs: Vec<DemoSource>, settings: &StreamSettings, start: Timestamp) -> Generator {
        let mut schedule = StdRng::seed_from_u64(settings.seed ^ 0x5ced_u64.rotate_left(48));
        let first = random_duration(&mut schedule, settings.first_attack);
        let carry = vec![0.0; orgs.len()];
        Generator {
            seed: settings.seed,
            rng: StdRng::seed_from_u64(settings.seed),
            schedule,
            injected: 0,
            orgs,
            events_per_second: settings.events_per_second,
            attacks: settings.attacks,
            attack_every: settings.attack_every,
            next_attack: add(start, first),
            rotation: Vec::new(),
            pending: Vec::new(),
            seq: 0,
            carry,
        }
    }

    /// When the next attack starts (if attacks are on).
    pub fn next_attack(&self) -> Option<Timestamp> {
        self.attacks.then_some(self.next_attack)
    }

    /// The records of event time `[from, to)`: the ordinary mix, and the attacks that started
    /// or go on in that time.
    pub fn advance(&mut self, from: Timestamp, to: Timestamp) -> Tick {
        let mut tick = Tick::default();
        let span = to.duration_since(from).as_secs_f64().max(0.0);
        if span > 0.0 && !self.orgs.is_empty() {
            let total: u32 = self.orgs.iter().map(|o| o.profile.weight).sum::<u32>().max(1);
            for i in 0..self.orgs.len() {
                let share = f64::from(self.orgs[i].profile.weight) / f64::from(total);
                let want =
                    f64::from(self.events_per_second) * span * share * self.rng.random_range(0.7..1.3) + self.carry[i];
                let n = want.floor();
                self.carry[i] = want - n;
                for _ in 0..n as u64 {
                    let at = add_secs(from, self.rng.random_range(0.0..span));
                    self.ordinary(i, at);
                }
            }
        }
        while self.attacks && self.next_attack < to && !self.orgs.is_empty() {
            let at = self.next_attack;
            if let Some(started) = self.start_attack(at) {
                tick.attacks.push(started);
            }
            let gap = random_duration(&mut self.schedule, self.attack_every).max(Duration::from_secs(1));
            self.next_attack = add(at, gap);
        }
        self.pending.sort_by_key(|r| (r.at, r.seq));
        let due = self.pending.partition_point(|r| r.at < to);
        let mut groups: BTreeMap<(usize, Stream), (String, usize)> = BTreeMap::new();
        for r in self.pending.drain(..due) {
            let (body, n) = groups.entry((r.org, r.stream)).or_default();
            body.push_str(&r.line);
            body.push('\n');
            *n += 1;
        }
        tick.batches = groups
            .into_iter()
            .map(|((org, stream), (body, records))| Batch {
                org: self.orgs[org].org,
                source: stream.source(),
                format: stream.format(),
                body,
                records,
            })
            .collect();
        tick
    }

    /// Starts an attack at `at`: the next scenario of the rotation, in an organisation that has
    /// what it needs.
    fn start_attack(&mut self, at: Timestamp) -> Option<AttackStarted> {
        for _ in 0..Scenario::ALL.len() * 2 {
            if self.rotation.is_empty() {
                self.rotation = Scenario::ALL.to_vec();
                self.rotation.shuffle(&mut self.schedule);
            }
            let scenario = self.rotation.pop()?;
            let fit: Vec<usize> = (0..self.orgs.len()).filter(|&i| scenario.fits(self.orgs[i].profile)).collect();
            if let Some(&org) = fit.choose(&mut self.schedule) {
                return Some(self.inject(scenario, org, at));
            }
        }
        None
    }

    /// Plays `scenario` in the organisation at `org` (an index into the sources) from `at`.
    pub fn inject(&mut self, scenario: Scenario, org: usize, at: Timestamp) -> AttackStarted {
        // Each attack draws from a generator of its own, so that its records do not depend on
        // the ordinary mix before it.
        self.injected += 1;
        let own = StdRng::seed_from_u64(self.seed ^ self.injected.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let ordinary = std::mem::replace(&mut self.rng, own);
        let host = match scenario {
            Scenario::SshBruteForce => self.ssh_brute_force(org, at),
            Scenario::PasswordSpraying => self.password_spraying(org, at),
            Scenario::WindowsTakeover => self.windows_takeover(org, at),
            Scenario::ZimbraExploit => self.zimbra_exploit(org, at),
            Scenario::VcenterMassDeletion => self.vcenter_mass_deletion(org, at),
            Scenario::ProxmoxMassDeletion => self.proxmox_mass_deletion(org, at),
        };
        self.rng = ordinary;
        let o = &self.orgs[org];
        AttackStarted { scenario, org: o.org, short: o.short.clone(), at, host }
    }

    fn push(&mut self, org: usize, stream: Stream, at: Timestamp, line: String) {
        self.seq += 1;
        // Microseconds: what the store keeps.
        let at = Timestamp::from_microsecond(at.as_microsecond()).unwrap_or(at);
        self.pending.push(Record { at, seq: self.seq, org, stream, line });
    }

    fn profile(&self, org: usize) -> &'static Profile {
        self.orgs[org].profile
    }

    // --- the ordinary mix --------------------------------------------------------------------

    fn ordinary(&mut self, org: usize, at: Timestamp) {
        let p = self.profile(org);
        // Weights in thousandths. A mistyped password is rare enough that ten for one account
        // within ten minutes (the brute-force rule) does not happen by chance.
        let mut kinds: Vec<(u32, Kind)> = vec![
            (220, Kind::Process),
            (70, Kind::DomainLogon),
            (30, Kind::WorkstationLogon),
            (1, Kind::MistypedPassword),
            (40, Kind::Ssh),
            (20, Kind::Sudo),
            (40, Kind::Cron),
            (180, Kind::Portal),
            (160, Kind::Conn),
            (100, Kind::Dns),
        ];
        if p.postfix {
            kinds.push((20, Kind::Mail));
        }
        if p.zimbra {
            kinds.push((80, Kind::Zimbra));
        }
        if p.vcenter {
            kinds.push((10, Kind::Vcenter));
        }
        if p.proxmox {
            kinds.push((10, Kind::Proxmox));
        }
        let total: u32 = kinds.iter().map(|(w, _)| w).sum();
        let mut pick = self.rng.random_range(0..total);
        let mut kind = Kind::Process;
        for (w, k) in kinds {
            if pick < w {
                kind = k;
                break;
            }
            pick -= w;
        }
        match kind {
            Kind::Process => self.process(org, at),
            Kind::DomainLogon => self.domain_logon(org, at),
            Kind::WorkstationLogon => self.workstation_logon(org, at),
            Kind::MistypedPassword => self.mistyped_password(org, at),
            Kind::Ssh => self.ssh_logon(org, at),
            Kind::Sudo => self.sudo(org, at),
            Kind::Cron => self.cron(org, at),
            Kind::Portal => self.portal(org, at),
            Kind::Conn => self.conn(org, at),
            Kind::Dns => self.dns(org, at),
            Kind::Mail => self.mail(org, at),
            Kind::Zimbra => self.zimbra(org, at),
            Kind::Vcenter => self.vcenter(org, at),
            Kind::Proxmox => self.proxmox(org, at),
        }
    }

    /// A member of staff (index into the organisation's people) and their workstation.
    fn person(&mut self) -> usize {
        self.rng.random_range(0..STAFF)
    }

    fn user_name(&self, org: usize, person: usize) -> String {
        // n = 24 q + r gives the pair (r, q + r): distinct for every n below 24 × 24.
        let n = self.profile(org).staff_block * STAFF + person % STAFF;
        let (f, l) = (FIRST_NAMES.len(), LAST_NAMES.len());
        format!("{}.{}", FIRST_NAMES[n % f], LAST_NAMES[(n / f + n) % l])
    }

    fn workstation(&self, org: usize, person: usize) -> String {
        let p = self.profile(org);
        format!("{}{:03}.corp.{}", p.ws_prefix, person % p.workstations + 1, p.domain)
    }

    fn workstation_ip(&self, org: usize, person: usize) -> String {
        let p = self.profile(org);
        format!("10.{}.{}.{}", p.net, 10 + person / 200, person % 200 + 20)
    }

    fn dc(&self, org: usize) -> String {
        let p = self.profile(org);
        format!("{}.corp.{}", p.dc, p.domain)
    }

    fn linux_host(&mut self, org: usize) -> String {
        let p = self.profile(org);
        let name = p.linux.choose(&mut self.rng).copied().unwrap_or("srv01");
        format!("{name}.{}", p.domain)
    }

    fn pid(&mut self) -> u32 {
        self.rng.random_range(1200..65000)
    }

    fn guid(&mut self) -> String {
        let v: u128 = self.rng.random();
        format!("{{{}}}", Uuid::from_u128(v).hyphenated()).to_uppercase()
    }

    fn record_id(&mut self) -> u64 {
        self.seq * 7 + 1_204_331
    }

    fn winlogbeat(&mut self, org: usize, at: Timestamp, computer: &str, id: u32, data: serde_json::Value) {
        let (channel, provider) = if id == 1 {
            ("Microsoft-Windows-Sysmon/Operational", "Microsoft-Windows-Sysmon")
        } else {
            ("Security", "Microsoft-Windows-Security-Auditing")
        };
        let record_id = self.record_id();
        let line = json!({
            "@timestamp": at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "agent": {"type": "winlogbeat", "version": "8.15.3"},
            "ecs": {"version": "8.0.0"},
            "host": {"name": computer.to_lowercase()},
            "event": {"code": id.to_string(), "kind": "event", "provider": provider, "module": if provider.ends_with("Sysmon") { "sysmon" } else { "security" }},
            "winlog": {
                "channel": channel,
                "event_id": id,
                "provider_name": provider,
                "computer_name": computer,
                "record_id": record_id,
                "event_data": data,
            },
        });
        self.push(org, Stream::Winlogbeat, at, line.to_string());
    }

    fn process(&mut self, org: usize, at: Timestamp) {
        let person = self.person();
        let user = self.user_name(org, person);
        let ws = self.workstation(org, person);
        let netbios = self.profile(org).netbios;
        let Some(&(image, command, parent)) = PROGRAMS.choose(&mut self.rng) else { return };
        let system = image.contains(r"\System32\svchost") || parent.ends_with("services.exe");
        let account = if system { r"NT AUTHORITY\SYSTEM".to_owned() } else { format!(r"{netbios}\{user}") };
        let (pid, ppid) = (self.pid(), self.pid());
        let (guid, parent_guid) = (self.guid(), self.guid());
        let data = json!({
            "RuleName": "-",
            "UtcTime": at.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            "ProcessGuid": guid,
            "ProcessId": pid.to_string(),
            "Image": image,
            "FileVersion": "-",
            "CommandLine": command,
            "CurrentDirectory": "C:\\Windows\\system32\\",
            "User": account,
            "LogonId": format!("0x{:x}", self.rng.random_range(0x3e7..0xffffff_u32)),
            "TerminalSessionId": if system { "0" } else { "1" },
            "IntegrityLevel": if system { "System" } else { "Medium" },
            "Hashes": format!("SHA256={}", fake_hash(image)),
            "ParentProcessGuid": parent_guid,
            "ParentProcessId": ppid.to_string(),
            "ParentImage": parent,
            "ParentCommandLine": parent,
            "ParentUser": account,
        });
        self.winlogbeat(org, at, &ws, 1, data);
    }

    fn logon_data(
        &mut self,
        org: usize,
        user: &str,
        logon_type: u32,
        ip: &str,
        workstation: &str,
    ) -> serde_json::Value {
        let netbios = self.profile(org).netbios;
        let rid = 1100 + (user.len() as u32 * 37) % 900;
        let kerberos = logon_type == 3 && !ip.starts_with("203.");
        json!({
            "SubjectUserSid": "S-1-0-0",
            "SubjectUserName": "-",
            "SubjectDomainName": "-",
            "SubjectLogonId": "0x0",
            "TargetUserSid": format!("S-1-5-21-3623811015-3361044348-30300820-{rid}"),
            "TargetUserName": user,
            "TargetDomainName": netbios,
            "TargetLogonId": format!("0x{:x}", self.rng.random_range(0x100000..0xffffffff_u32)),
            "LogonType": logon_type.to_string(),
            "LogonProcessName": if kerberos { "Kerberos" } else { "NtLmSsp " },
            "AuthenticationPackageName": if kerberos { "Kerberos" } else { "NTLM" },
            "WorkstationName": workstation,
            "LogonGuid": self.guid(),
            "IpAddress": ip,
            "IpPort": self.rng.random_range(49152..65535_u32).to_string(),
            "ImpersonationLevel": "%%1833",
            "ElevatedToken": "%%1843",
        })
    }

    fn domain_logon(&mut self, org: usize, at: Timestamp) {
        let person = self.person();
        let user = self.user_name(org, person);
        let ip = self.workstation_ip(org, person);
        let ws = self.workstation(org, person);
        let short_ws = ws.split('.').next().unwrap_or(&ws).to_owned();
        let data = self.logon_data(org, &user, 3, &ip, &short_ws);
        let dc = self.dc(org);
        self.winlogbeat(org, at, &dc, 4624, data);
    }

    fn workstation_logon(&mut self, org: usize, at: Timestamp) {
        let person = self.person();
        let user = self.user_name(org, person);
        let ws = self.workstation(org, person);
        let short_ws = ws.split('.').next().unwrap_or(&ws).to_owned();
        // Interactive log-on, or unlocking the screen.
        let logon_type = if self.rng.random_bool(0.6) { 7 } else { 2 };
        let data = self.logon_data(org, &user, logon_type, "127.0.0.1", &short_ws);
        self.winlogbeat(org, at, &ws, 4624, data);
    }

    /// Someone mistypes their password once, from their own workstation.
    fn mistyped_password(&mut self, org: usize, at: Timestamp) {
        let person = self.person();
        let user = self.user_name(org, person);
        let ip = self.workstation_ip(org, person);
        let ws = self.workstation(org, person);
        let short_ws = ws.split('.').next().unwrap_or(&ws).to_owned();
        let data = failed_logon_data(self.profile(org).netbios, &user, &ip, &short_ws);
        let dc = self.dc(org);
        self.winlogbeat(org, at, &dc, 4625, data);
    }

    fn syslog(&mut self, org: usize, at: Timestamp, host: &str, app: &str, pid: u32, msg: &str) {
        let line = format!("<{}>1 {} {host} {app} {pid} - - {msg}", priority(app), rfc3339(at));
        self.push(org, Stream::Syslog, at, line);
    }

    fn ssh_logon(&mut self, org: usize, at: Timestamp) {
        let host = self.linux_host(org);
        let admin = LINUX_ADMINS.choose(&mut self.rng).copied().unwrap_or("ansible");
        let net = self.profile(org).net;
        // From the jump host or an administrator's workstation.
        let from = format!("10.{net}.1.{}", self.rng.random_range(5..12));
        let port = self.rng.random_range(40000..60999);
        let pid = self.pid();
        let key: u128 = self.rng.random();
        let fingerprint = base64_like(key);
        self.syslog(
            org,
            at,
            &host,
            "sshd",
            pid,
            &format!("Accepted publickey for {admin} from {from} port {port} ssh2: ED25519 SHA256:{fingerprint}"),
        );
        let uid = 1000 + LINUX_ADMINS.iter().position(|a| *a == admin).unwrap_or(0);
        self.syslog(
            org,
            add_secs(at, 0.004),
            &host,
            "sshd",
            pid,
            &format!("pam_unix(sshd:session): session opened for user {admin}(uid={uid}) by (uid=0)"),
        );
    }

    fn sudo(&mut self, org: usize, at: Timestamp) {
        const COMMANDS: &[&str] = &[
            "/usr/bin/systemctl reload nginx",
            "/usr/bin/systemctl status postgresql",
            "/usr/bin/apt-get update",
            "/usr/bin/journalctl -u app --since -1h",
            "/usr/bin/tail -n 200 /var/log/syslog",
            "/usr/bin/df -h",
            "/usr/sbin/logrotate /etc/logrotate.conf",
            "/usr/bin/docker ps",
        ];
        let host = self.linux_host(org);
        let admin = LINUX_ADMINS.choose(&mut self.rng).copied().unwrap_or("ansible");
        let command = COMMANDS.choose(&mut self.rng).copied().unwrap_or("/usr/bin/id");
        let pid = self.pid();
        let tty =
            if admin == "ansible" { String::new() } else { format!("TTY=pts/{} ; ", self.rng.random_range(0..4)) };
        self.syslog(
            org,
            at,
            &host,
            "sudo",
            pid,
            &format!("{admin} : {tty}PWD=/home/{admin} ; USER=root ; COMMAND={command}"),
        );
    }

    fn cron(&mut self, org: usize, at: Timestamp) {
        const JOBS: &[&str] = &[
            "(root) CMD (/usr/lib/sysstat/debian-sa1 1 1)",
            "(root) CMD (cd / && run-parts --report /etc/cron.hourly)",
            "(backup) CMD (/opt/backup/bin/pg-dump-nightly.sh >/dev/null 2>&1)",
            "(root) CMD (test -x /usr/sbin/anacron || /usr/sbin/anacron -s)",
            "(www-data) CMD (php /var/www/portal/artisan schedule:run >> /dev/null 2>&1)",
        ];
        let host = self.linux_host(org);
        let job = JOBS.choose(&mut self.rng).copied().unwrap_or(JOBS[0]);
        let pid = self.pid();
        let user = job.trim_start_matches('(').split(')').next().unwrap_or("root");
        self.syslog(
            org,
            at,
            &host,
            "CRON",
            pid,
            &format!("pam_unix(cron:session): session opened for user {user}(uid=0) by (uid=0)"),
        );
        self.syslog(org, add_secs(at, 0.002), &host, "CRON", pid + 1, job);
    }

    fn public_ip(&mut self) -> String {
        // Mobile and broadband subscribers behind carrier-grade NAT.
        format!(
            "100.{}.{}.{}",
            self.rng.random_range(64..128),
            self.rng.random_range(0..256),
            self.rng.random_range(1..255)
        )
    }

    fn portal(&mut self, org: usize, at: Timestamp) {
        const ASSETS: &[&str] =
            &["/static/css/site.css", "/static/js/site.js", "/static/img/logo.svg", "/favicon.ico", "/robots.txt"];
        let p = self.profile(org);
        let ip = self.public_ip();
        let agent = USER_AGENTS.choose(&mut self.rng).copied().unwrap_or(USER_AGENTS[0]);
        let page = p.portal.choose(&mut self.rng).copied().unwrap_or("/");
        let (path, status, bytes) = match self.rng.random_range(0..20) {
            0..=11 => (page.to_owned(), 200, self.rng.random_range(6_000..48_000)),
            12..=16 => (
                ASSETS.choose(&mut self.rng).copied().unwrap_or("/favicon.ico").to_owned(),
                200,
                self.rng.random_range(300..90_000),
            ),
            17 | 18 => (page.to_owned(), 304, 0),
            _ => (format!("{page}/old-link"), 404, 1_024),
        };
        let referer = if self.rng.random_bool(0.5) { format!("https://www.{}/", p.domain) } else { "-".to_owned() };
        let request = format!("GET {path} HTTP/1.1");
        let line = Access { ip: &ip, user: "-", request: &request, status, bytes, referer: &referer, agent }.line(at);
        self.push(org, Stream::Portal, at, line);
    }

    fn zeek_uid(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut uid = String::from("C");
        for _ in 0..17 {
            uid.push(char::from(ALPHABET[self.rng.random_range(0..ALPHABET.len())]));
        }
        uid
    }

    fn conn(&mut self, org: usize, at: Timestamp) {
        let person = self.person();
        let src = self.workstation_ip(org, person);
        let net = self.profile(org).net;
        let (dst, port, proto, service) = match self.rng.random_range(0..10) {
            0 => (format!("10.{net}.0.10"), 445, "tcp", "smb"),
            1 => (format!("10.{net}.0.10"), 88, "tcp", "krb_tcp"),
            _ => {
                let &(_, addr, port, service) = DESTINATIONS.choose(&mut self.rng).unwrap_or(&DESTINATIONS[0]);
                (addr.to_owned(), port, "tcp", service)
            }
        };
        let orig_bytes: u64 = self.rng.random_range(200..40_000);
        let resp_bytes: u64 = if self.rng.random_bool(0.2) {
            self.rng.random_range(100_000..4_000_000)
        } else {
            self.rng.random_range(500..60_000)
        };
        let orig_pkts = orig_bytes / 900 + self.rng.random_range(3..12);
        let resp_pkts = resp_bytes / 1400 + self.rng.random_range(3..12);
        let line = json!({
            "_path": "conn",
            "ts": at.as_microsecond() as f64 / 1e6,
            "uid": self.zeek_uid(),
            "id.orig_h": src,
            "id.orig_p": self.rng.random_range(49152..65535),
            "id.resp_h": dst,
            "id.resp_p": port,
            "proto": proto,
            "service": service,
            "duration": (self.rng.random_range(0.02..90.0_f64) * 1000.0).round() / 1000.0,
            "orig_bytes": orig_bytes,
            "resp_bytes": resp_bytes,
            "conn_state": "SF",
            "local_orig": true,
            "local_resp": dst.starts_with("10."),
            "missed_bytes": 0,
            "history": "ShADadFf",
            "orig_pkts": orig_pkts,
            "orig_ip_bytes": orig_bytes + orig_pkts * 40,
            "resp_pkts": resp_pkts,
            "resp_ip_bytes": resp_bytes + resp_pkts * 40,
        });
        self.push(org, Stream::Zeek, at, line.to_string());
    }

    fn dns(&mut self, org: usize, at: Timestamp) {
        let person = self.person();
        let src = self.workstation_ip(org, person);
        let p = self.profile(org);
        let (query, answer) = if self.rng.random_bool(0.25) {
            let name =
                if self.rng.random_bool(0.5) { format!("intranet.{}", p.domain) } else { self.dc(org).to_lowercase() };
            (name, format!("10.{}.0.{}", p.net, self.rng.random_range(10..40)))
        } else {
            let &(name, addr, _, _) = DESTINATIONS.choose(&mut self.rng).unwrap_or(&DESTINATIONS[0]);
            (name.to_owned(), addr.to_owned())
        };
        let line = json!({
            "_path": "dns",
            "ts": at.as_microsecond() as f64 / 1e6,
            "uid": self.zeek_uid(),
            "id.orig_h": src,
            "id.orig_p": self.rng.random_range(49152..65535),
            "id.resp_h": format!("10.{}.0.53", p.net),
            "id.resp_p": 53,
            "proto": "udp",
            "trans_id": self.rng.random_range(1..65535),
            "rtt": (self.rng.random_range(0.0002..0.03_f64) * 1e6).round() / 1e6,
            "query": query,
            "qclass": 1,
            "qclass_name": "C_INTERNET",
            "qtype": 1,
            "qtype_name": "A",
            "rcode": 0,
            "rcode_name": "NOERROR",
            "AA": false,
            "TC": false,
            "RD": true,
            "RA": true,
            "Z": 0,
            "answers": [answer],
            "TTLs": [300.0],
            "rejected": false,
        });
        self.push(org, Stream::Zeek, at, line.to_string());
    }

    fn queue_id(&mut self) -> String {
        format!("{:011X}", self.rng.random_range(0x1_0000_0000_u64..0xFFF_FFFF_FFFF_u64))
    }

    /// A message submitted by a member of staff and relayed out: five Postfix lines.
    fn mail(&mut self, org: usize, at: Timestamp) {
        const PARTNERS: &[(&str, &str)] = &[
            ("mx.partner-bank.example", "192.0.2.201"),
            ("mail.contractor.example", "192.0.2.202"),
            ("mx1.university.example", "192.0.2.203"),
            ("smtp.ministry-partner.example", "192.0.2.204"),
        ];
        let p = self.profile(org);
        let person = self.person();
        let user = self.user_name(org, person);
        let ip = self.workstation_ip(org, person);
        let host = format!("mx01.{}", p.domain);
        let qid = self.queue_id();
        let &(relay, relay_ip) = PARTNERS.choose(&mut self.rng).unwrap_or(&PARTNERS[0]);
        let rcpt_domain = relay.split_once('.').map_or(relay, |(_, d)| d);
        let size = self.rng.random_range(2_000..400_000);
        let pid = self.pid();
        let steps = [
            (
                "postfix/submission/smtpd",
                format!("{qid}: client=unknown[{ip}], sasl_method=PLAIN, sasl_username={user}@{}", p.domain),
            ),
            ("postfix/cleanup", format!("{qid}: message-id=<{}.{}@{}>", at.as_second(), self.seq, p.domain)),
            ("postfix/qmgr", format!("{qid}: from=<{user}@{}>, size={size}, nrcpt=1 (queue active)", p.domain)),
            (
                "postfix/smtp",
                format!(
                    "{qid}: to=<info@{rcpt_domain}>, relay={relay}[{relay_ip}]:25, delay=0.9, delays=0.1/0.01/0.3/0.49, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)"
                ),
            ),
            ("postfix/qmgr", format!("{qid}: removed")),
        ];
        for (i, (app, msg)) in steps.into_iter().enumerate() {
            self.syslog(org, add_secs(at, i as f64 * 0.15), &host, app, pid + i as u32, &msg);
        }
    }

    fn zimbra(&mut self, org: usize, at: Timestamp) {
        const REQUESTS: &[(&str, &str)] = &[
            ("POST", "/service/soap/SearchRequest"),
            ("POST", "/service/soap/GetMsgRequest"),
            ("POST", "/service/soap/NoOpRequest"),
            ("POST", "/service/soap/BatchRequest"),
            ("POST", "/service/soap/GetFolderRequest"),
            ("POST", "/service/soap/SendMsgRequest"),
            ("GET", "/service/home/~/?auth=co&view=html&id=48213"),
            ("POST", "/service/upload?fmt=raw,extended"),
            ("GET", "/"),
        ];
        let p = self.profile(org);
        let person = self.person();
        let user = self.user_name(org, person);
        let ip = if self.rng.random_bool(0.7) { self.workstation_ip(org, person) } else { self.public_ip() };
        let &(method, path) = REQUESTS.choose(&mut self.rng).unwrap_or(&REQUESTS[0]);
        let bytes = self.rng.random_range(300..30_000);
        let agent = USER_AGENTS.choose(&mut self.rng).copied().unwrap_or(USER_AGENTS[0]);
        let referer = format!("https://mail.{}/", p.domain);
        let login = format!("{user}@{}", p.domain);
        let request = format!("{method} {path} HTTP/1.1");
        let line =
            Access { ip: &ip, user: &login, request: &request, status: 200, bytes, referer: &referer, agent }.line(at);
        self.push(org, Stream::Zimbra, at, line);
    }

    fn vcenter_line(&mut self, org: usize, at: Timestamp, kind: &str, user: &str, description: &str) {
        let p = self.profile(org);
        let host = format!("vcsa01.{}", p.domain);
        let id = 1_480_000 + self.seq;
        let msg = format!(
            " Event [{id}] [1-1] [{}] [vim.event.{kind}] [info] [{user}] [DC-Core] [{id}] [{description}]",
            at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        );
        self.syslog(org, add_secs(at, 0.4), &host, "vpxd", 4035, &msg);
    }

    fn vcenter(&mut self, org: usize, at: Timestamp) {
        let p = self.profile(org);
        let vm = format!(
            "{}-{:02}",
            ["erp-app", "hr-web", "gis", "scada-hist", "mail-relay"][self.rng.random_range(0..5)],
            self.rng.random_range(1..9)
        );
        let esx = format!("esx{:02}.{}", self.rng.random_range(1..7), p.domain);
        let net = p.net;
        match self.rng.random_range(0..4) {
            0 => {
                let from = format!("10.{net}.1.{}", self.rng.random_range(20..24));
                self.vcenter_line(org, at, "UserLoginSessionEvent", r"VSPHERE.LOCAL\svc-veeam", &format!(r"User VSPHERE.LOCAL\svc-veeam@{from} logged in as VMware vim-java 1.0"));
            }
            1 => self.vcenter_line(org, at, "VmReconfiguredEvent", r"VSPHERE.LOCAL\svc-veeam", &format!("Reconfigured {vm} on {esx} in DC-Core")),
            2 => self.vcenter_line(org, at, "VmPoweredOnEvent", &format!(r"{}\vmadmin", p.netbios), &format!("{vm} on {esx} in DC-Core is powered on")),
            _ => self.vcenter_line(org, at, "UserLogoutSessionEvent", r"VSPHERE.LOCAL\svc-veeam", r"User VSPHERE.LOCAL\svc-veeam logged out (login time: 1 minute, number of API invocations: 34, user agent: VMware vim-java 1.0)"),
        }
    }

    fn upid(&mut self, node: &str, at: Timestamp, kind: &str, id: &str, user: &str) -> String {
        let pid = self.pid();
        let pstart: u32 = self.rng.random_range(0x100000..0xFFFFFF);
        format!("UPID:{node}:{pid:08X}:{pstart:08X}:{:08X}:{kind}:{id}:{user}:", at.as_second())
    }

    fn proxmox(&mut self, org: usize, at: Timestamp) {
        let p = self.profile(org);
        let node = format!("pve0{}", self.rng.random_range(1..4));
        let host = format!("{node}.{}", p.domain);
        let guest = self.rng.random_range(100..140).to_string();
        let (kind, user) = match self.rng.random_range(0..3) {
            0 => ("vzdump", "root@pam"),
            1 => ("qmstart", "ops@pve"),
            _ => ("qmsnapshot", "ops@pve"),
        };
        let upid = self.upid(&node, at, kind, &guest, user);
        let pid = self.pid();
        self.syslog(org, at, &host, "pvedaemon", pid, &format!("<{user}> starting task {upid}"));
        let end = add_secs(at, self.rng.random_range(2.0..30.0));
        self.syslog(org, end, &host, "pvedaemon", pid, &format!("<{user}> end task {upid} OK"));
    }

    // --- attacks -----------------------------------------------------------------------------

    fn attacker_ip(&mut self) -> String {
        // Outside every demo organisation's ranges.
        format!("203.0.113.{}", self.rng.random_range(130..250))
    }

    fn ssh_brute_force(&mut self, org: usize, at: Timestamp) -> String {
        let host = self.linux_host(org);
        let ip = self.attacker_ip();
        let account = ["deploy", "oracle", "postgres", "sysadmin"][self.rng.random_range(0..4)];
        let backdoor = ["sysupdate", "dbus-helper", "svc-monitor"][self.rng.random_range(0..3)];
        let mut t = at;
        for _ in 0..self.rng.random_range(12..17) {
            let pid = self.pid();
            let port = self.rng.random_range(30000..60999);
            self.syslog(
                org,
                t,
                &host,
                "sshd",
                pid,
                &format!("Failed password for {account} from {ip} port {port} ssh2"),
            );
            t = add_secs(t, self.rng.random_range(0.3..1.2));
        }
        t = add_secs(t, self.rng.random_range(1.0..3.0));
        let pid = self.pid();
        let port = self.rng.random_range(30000..60999);
        self.syslog(org, t, &host, "sshd", pid, &format!("Accepted password for {account} from {ip} port {port} ssh2"));
        t = add_secs(t, self.rng.random_range(3.0..6.0));
        let pid = self.pid();
        self.syslog(
            org,
            t,
            &host,
            "sudo",
            pid,
            &format!(
                "{account} : TTY=pts/1 ; PWD=/home/{account} ; USER=root ; COMMAND=/usr/sbin/useradd -m {backdoor}"
            ),
        );
        t = add_secs(t, self.rng.random_range(1.0..3.0));
        let pid = self.pid();
        self.syslog(org, t, &host, "sudo", pid, &format!("{account} : TTY=pts/1 ; PWD=/home/{account} ; USER=root ; COMMAND=/usr/sbin/usermod -aG sudo {backdoor}"));
        host
    }

    fn password_spraying(&mut self, org: usize, at: Timestamp) -> String {
        let dc = self.dc(org);
        let ip = self.attacker_ip();
        let netbios = self.profile(org).netbios;
        // Real names (from the address book of a mailbox already read) and the usual guesses.
        let mut people: Vec<usize> = (0..STAFF).collect();
        people.shuffle(&mut self.rng);
        let mut accounts: Vec<String> =
            people.into_iter().take(self.rng.random_range(9..15)).map(|p| self.user_name(org, p)).collect();
        accounts.extend(
            ["administrator", "helpdesk", "svc_backup", "scanner", "it.support", "hr.office"]
                .iter()
                .take(self.rng.random_range(3..7))
                .map(|a| (*a).to_owned()),
        );
        accounts.shuffle(&mut self.rng);
        let mut t = at;
        for user in accounts {
            let data = failed_logon_data(netbios, &user, &ip, "WIN-R4ND0MH0ST");
            self.winlogbeat(org, t, &dc, 4625, data);
            t = add_secs(t, self.rng.random_range(0.2..0.8));
        }
        dc
    }

    fn windows_takeover(&mut self, org: usize, at: Timestamp) -> String {
        let dc = self.dc(org);
        let ip = self.attacker_ip();
        let netbios = self.profile(org).netbios;
        let person = self.rng.random_range(0..STAFF);
        let user = self.user_name(org, person);
        let mut t = at;
        for _ in 0..self.rng.random_range(11..15) {
            let data = failed_logon_data(netbios, &user, &ip, "WIN-R4ND0MH0ST");
            self.winlogbeat(org, t, &dc, 4625, data);
            t = add_secs(t, self.rng.random_range(0.3..1.2));
        }
        t = add_secs(t, self.rng.random_range(1.0..3.0));
        let data = self.logon_data(org, &user, 3, &ip, "WIN-R4ND0MH0ST");
        self.winlogbeat(org, t, &dc, 4624, data);
        let new_account = ["svc_sync2", "adm_backup", "helpdesk03"][self.rng.random_range(0..3)];
        let domain = self.profile(org).domain;
        let dn = format!("CN={new_account},CN=Users,DC=corp,DC={}", domain.replace('.', ",DC="));
        let subject = json!({
            "SubjectUserSid": "S-1-5-21-3623811015-3361044348-30300820-1187",
            "SubjectUserName": user,
            "SubjectDomainName": netbios,
            "SubjectLogonId": "0x5d1e3a7",
        });
        t = add_secs(t, self.rng.random_range(4.0..8.0));
        let mut created = subject.clone();
        if let Some(m) = created.as_object_mut() {
            m.insert("TargetUserName".into(), json!(new_account));
            m.insert("TargetDomainName".into(), json!(netbios));
            m.insert("TargetSid".into(), json!("S-1-5-21-3623811015-3361044348-30300820-4411"));
            m.insert("SamAccountName".into(), json!(new_account));
            m.insert("UserPrincipalName".into(), json!(format!("{new_account}@{domain}")));
        }
        self.winlogbeat(org, t, &dc, 4720, created);
        t = add_secs(t, self.rng.random_range(2.0..4.0));
        let mut added = subject;
        if let Some(m) = added.as_object_mut() {
            m.insert("MemberName".into(), json!(dn));
            m.insert("MemberSid".into(), json!("S-1-5-21-3623811015-3361044348-30300820-4411"));
            m.insert("TargetUserName".into(), json!("Domain Admins"));
            m.insert("TargetDomainName".into(), json!(netbios));
            m.insert("TargetSid".into(), json!("S-1-5-21-3623811015-3361044348-30300820-512"));
        }
        self.winlogbeat(org, t, &dc, 4728, added);
        dc
    }

    fn zimbra_exploit(&mut self, org: usize, at: Timestamp) -> String {
        let p = self.profile(org);
        let ip = self.attacker_ip();
        let agent = ATTACK_AGENTS.choose(&mut self.rng).copied().unwrap_or(ATTACK_AGENTS[0]);
        let shell = ["Startup1_3", "ico", "zimbraUpdate", "logout2"][self.rng.random_range(0..4)];
        let host = format!("mail.{}", p.domain);
        let mut t = at;
        let attacker = |request: &str, status: u16, bytes: u32, at: Timestamp| {
            Access { ip: &ip, user: "-", request, status, bytes, referer: "-", agent }.line(at)
        };
        let line = attacker("POST /Autodiscover/Autodiscover.xml HTTP/1.1", 200, 1_342, t);
        self.push(org, Stream::Zimbra, t, line);
        t = add_secs(t, self.rng.random_range(1.0..3.0));
        let line = attacker(
            "POST /service/extension/backup/mboximport?account-name=admin&account-status=1&ow=cmd HTTP/1.1",
            401,
            512,
            t,
        );
        self.push(org, Stream::Zimbra, t, line);
        t = add_secs(t, self.rng.random_range(0.5..1.5));
        let file = json!({
            "EventID": 11,
            "Channel": "Linux-Sysmon/Operational",
            "Provider_Name": "Linux-Sysmon",
            "Computer": host,
            "EventTime": rfc3339(t),
            "RuleName": "-",
            "UtcTime": t.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            "ProcessGuid": self.guid(),
            "ProcessId": self.pid(),
            "Image": "/opt/zimbra/common/bin/java",
            "TargetFilename": format!("/opt/zimbra/jetty_base/webapps/zimbra/public/jsp/{shell}.jsp"),
            "User": "zimbra",
        });
        self.push(org, Stream::LinuxSysmon, t, file.to_string());
        for cmd in ["id", "uname%20-a", "cat%20/opt/zimbra/conf/localconfig.xml", "ls%20-la%20/opt/zimbra/backup"] {
            t = add_secs(t, self.rng.random_range(1.5..4.0));
            let request = format!("GET /public/jsp/{shell}.jsp?pwd=x&cmd={cmd} HTTP/1.1");
            let bytes = self.rng.random_range(80..4_000);
            let line = attacker(&request, 200, bytes, t);
            self.push(org, Stream::Zimbra, t, line);
        }
        host
    }

    fn vcenter_mass_deletion(&mut self, org: usize, at: Timestamp) -> String {
        let p = self.profile(org);
        let ip = self.attacker_ip();
        let admin = r"VSPHERE.LOCAL\administrator";
        self.vcenter_line(
            org,
            at,
            "UserLoginSessionEvent",
            admin,
            &format!(r"User {admin}@{ip} logged in as pyvmomi Python/3.10.12"),
        );
        let mut t = add_secs(at, self.rng.random_range(2.0..4.0));
        const VMS: &[&str] = &[
            "erp-app01",
            "erp-app02",
            "erp-db01",
            "hr-web01",
            "gis-app01",
            "gis-db01",
            "scada-hist01",
            "scada-hist02",
            "mail-relay01",
            "dms-app01",
            "dms-db01",
            "bi-app01",
            "bi-db01",
            "ad-sync01",
            "backup-proxy01",
            "pki-ca01",
            "wsus01",
            "print01",
            "file01",
            "file02",
            "jump01",
        ];
        let count = self.rng.random_range(12..=VMS.len());
        for vm in &VMS[..count] {
            let esx = format!("esx{:02}.{}", self.rng.random_range(1..7), p.domain);
            self.vcenter_line(org, t, "VmPoweredOffEvent", admin, &format!("{vm} on {esx} in DC-Core is powered off"));
            t = add_secs(t, self.rng.random_range(0.3..0.8));
            self.vcenter_line(org, t, "VmRemovedEvent", admin, &format!("Removed {vm} on {esx} from DC-Core"));
            t = add_secs(t, self.rng.random_range(0.4..1.2));
        }
        format!("vcsa01.{}", p.domain)
    }

    fn proxmox_mass_deletion(&mut self, org: usize, at: Timestamp) -> String {
        let p = self.profile(org);
        let node = "pve01";
        let host = format!("{node}.{}", p.domain);
        let user = "root@pam";
        let pid = self.pid();
        self.syslog(org, at, &host, "pvedaemon", pid, &format!("<{user}> successful auth for user '{user}'"));
        let mut t = add_secs(at, self.rng.random_range(2.0..4.0));
        let count = self.rng.random_range(12..18);
        for guest in 100..100 + count {
            let upid = self.upid(node, t, "qmdestroy", &guest.to_string(), user);
            let pid = self.pid();
            self.syslog(org, t, &host, "pvedaemon", pid, &format!("<{user}> starting task {upid}"));
            let end = add_secs(t, self.rng.random_range(0.5..2.0));
            self.syslog(org, end, &host, "pvedaemon", pid, &format!("<{user}> end task {upid} OK"));
            t = add_secs(t, self.rng.random_range(0.4..1.2));
        }
        host
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Process,
    DomainLogon,
    WorkstationLogon,
    MistypedPassword,
    Ssh,
    Sudo,
    Cron,
    Portal,
    Conn,
    Dns,
    Mail,
    Zimbra,
    Vcenter,
    Proxmox,
}

/// The EventData of a failed network log-on (4625, bad password).
fn failed_logon_data(netbios: &str, user: &str, ip: &str, workstation: &str) -> serde_json::Value {
    json!({
        "SubjectUserSid": "S-1-0-0",
        "SubjectUserName": "-",
        "SubjectDomainName": "-",
        "SubjectLogonId": "0x0",
        "TargetUserSid": "S-1-0-0",
        "TargetUserName": user,
        "TargetDomainName": netbios,
        "Status": "0xc000006d",
        "FailureReason": "%%2313",
        "SubStatus": "0xc000006a",
        "LogonType": "3",
        "LogonProcessName": "NtLmSsp ",
        "AuthenticationPackageName": "NTLM",
        "WorkstationName": workstation,
        "IpAddress": ip,
        "IpPort": "0",
    })
}

/// One request of a web access log.
struct Access<'a> {
    ip: &'a str,
    user: &'a str,
    request: &'a str,
    status: u16,
    bytes: u32,
    referer: &'a str,
    agent: &'a str,
}

impl Access<'_> {
    /// The request in the combined log format.
    fn line(&self, at: Timestamp) -> String {
        let Access { ip, user, request, status, bytes, referer, agent } = self;
        format!(
            "{ip} - {user} [{}] \"{request}\" {status} {bytes} \"{referer}\" \"{agent}\"",
            at.strftime("%d/%b/%Y:%H:%M:%S +0000")
        )
    }
}

/// The syslog priority (facility × 8 + severity) a program's lines are sent with.
fn priority(app: &str) -> u8 {
    match app {
        "sshd" | "sudo" => 86,
        "CRON" => 78,
        "vpxd" => 14,
        "pvedaemon" => 30,
        app if app.starts_with("postfix") => 22,
        _ => 13,
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

fn add_secs(t: Timestamp, secs: f64) -> Timestamp {
    add(t, Duration::from_secs_f64(secs.max(0.0)))
}

fn random_duration(rng: &mut StdRng, (low, high): (Duration, Duration)) -> Duration {
    if high <= low { low } else { Duration::from_secs_f64(rng.random_range(low.as_secs_f64()..high.as_secs_f64())) }
}

/// A stable SHA-256 for a program, so that one program has one hash everywhere.
fn fake_hash(image: &str) -> String {
    hex::encode_upper(sha2::Sha256::digest(image.to_lowercase().as_bytes()))
}

fn base64_like(v: u128) -> String {
    use base64::Engine as _;
    let mut bytes = v.to_le_bytes().to_vec();
    bytes.extend_from_slice(&v.rotate_left(64).to_be_bytes());
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// Parses a tick's batches into events for the store. Returns the events and the records the
/// readers refused (none, unless the generator has a bug), with a note on the first.
fn to_events(batches: &[Batch], tlp: nigehban_policy::Tlp) -> (Vec<NewEvent>, u64, Option<String>) {
    let mut events = Vec::new();
    let mut rejected = 0;
    let mut note = None;
    for b in batches {
        let target = Target { org: b.org, tlp, source: b.source };
        match parse(b.body.as_bytes(), Some(b.format), &target) {
            Ok(p) => {
                rejected += p.rejected;
                if note.is_none()
                    && let Some(e) = p.errors.first()
                {
                    note = Some(format!("{} line {:?}: {}", b.source, e.line, e.message));
                }
                events.extend(p.events);
            }
            Err(e) => {
                rejected += b.records as u64;
                note.get_or_insert_with(|| format!("{}: {e}", b.source));
            }
        }
    }
    (events, rejected, note)
}

/// Feeds `orgs` until `shutdown` says stop: every `settings.tick`, the records of the time
/// since the last batch are parsed and stored. When monitoring is busy the batch waits and is
/// tried again; nothing generated is dropped.
pub async fn run(
    monitor: Arc<Monitor>,
    orgs: Vec<DemoSource>,
    settings: StreamSettings,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if orgs.is_empty() {
        tracing::warn!(message = "The demo stream found none of its organisations in the store; it does not run.");
        return;
    }
    let started = Instant::now();
    let start = Timestamp::now();
    let speed = settings.speed.max(1);
    let clock = move || add(start, started.elapsed().saturating_mul(speed));
    let mut generator = Some(Generator::new(orgs.clone(), &settings, start));
    tracing::info!(
        message = "The demo stream feeds live events.",
        organisations = %orgs.iter().map(|o| o.short.as_str()).collect::<Vec<_>>().join(", "),
        events_per_second = settings.events_per_second,
        seed = settings.seed,
        attacks = settings.attacks,
    );
    let tlp = monitor.config().default_tlp;
    let mut from = start;
    let mut last_purge = Instant::now();
    let mut ticker = tokio::time::interval(settings.tick.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        let to = clock();
        let Some(mut g) = generator.take() else { break };
        // Generating and parsing a second of records is CPU work: off the async threads.
        let work = tokio::task::spawn_blocking(move || {
            let tick = g.advance(from, to);
            let parsed = to_events(&tick.batches, tlp);
            (g, tick.attacks, parsed)
        })
        .await;
        let (g, attacks, (events, rejected, note)) = match work {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(message = "The demo stream failed; it stops.", error = %e);
                return;
            }
        };
        generator = Some(g);
        from = to;
        for a in &attacks {
            tracing::info!(
                message = "Demo attack started.",
                scenario = a.scenario.name(),
                organisation = %a.short,
                host = %a.host,
            );
        }
        if rejected > 0 {
            tracing::warn!(
                message = "The readers refused demo records.",
                rejected,
                first = note.as_deref().unwrap_or("")
            );
        }
        if !store_patiently(&monitor, &events, &mut shutdown).await {
            break;
        }
        if let Some(keep) = settings.keep_events
            && last_purge.elapsed() >= Duration::from_secs(60)
        {
            last_purge = Instant::now();
            purge(&monitor, &orgs, keep).await;
        }
    }
    tracing::info!(message = "The demo stream stopped.");
}

/// Stores `events`, waiting and trying again while monitoring is busy or the store fails.
/// `false` when asked to stop first.
async fn store_patiently(
    monitor: &Monitor,
    events: &[NewEvent],
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let mut wait = Duration::from_millis(250);
    loop {
        let why = match monitor.store(events).await {
            Ok(_) => return true,
            Err(IngestRefusal::Busy(why)) => {
                tracing::debug!(message = "Monitoring is busy; the demo stream waits.", reason = %why);
                None
            }
            Err(IngestRefusal::Store(e)) => Some(e.to_string()),
            Err(IngestRefusal::Rejected(why)) => {
                tracing::error!(message = "The demo stream's events were refused; they are skipped.", reason = %why);
                return true;
            }
        };
        if let Some(e) = why {
            tracing::warn!(message = "The demo stream could not store its events; trying again.", error = %e);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return false;
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Deletes the fed organisations' events received more than `keep` ago that detection has
/// passed, so that a demo left running does not fill the disk.
async fn purge(monitor: &Monitor, orgs: &[DemoSource], keep: Duration) {
    let before = Timestamp::now().as_microsecond() - i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
    let detected = monitor.detected.load(Ordering::Relaxed);
    for o in orgs {
        match monitor.store.delete_events(o.org, before, detected).await {
            Ok(n) if n > 0 => {
                tracing::debug!(message = "Old demo events deleted.", organisation = %o.short, events = n)
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(message = "Old demo events could not be deleted.", organisation = %o.short, error = %e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use nigehban_detect::{Detection, Detector, DetectorSet, Findings, StreamState};
    use nigehban_event::{Position, Source, codec};
    use nigehban_policy::Tlp;

    use super::*;

    /// Rule levels by rank (as alerts keep them).
    const LOW: i64 = 1;
    const MEDIUM: i64 = 2;

    /// Every profile, with ids 1, 2, 3 …
    fn all_orgs() -> Vec<DemoSource> {
        PROFILES
            .iter()
            .enumerate()
            .filter_map(|(i, p)| DemoSource::new(Uuid::from_u128(i as u128 + 1), p.short))
            .collect()
    }

    fn start() -> Timestamp {
        "2026-11-28T10:00:00Z".parse().unwrap()
    }

    fn settings(seed: u64, events_per_second: u32, attacks: bool) -> StreamSettings {
        StreamSettings { seed, events_per_second, attacks, ..StreamSettings::default() }
    }

    /// Detection as the monitor runs it: events decoded from their stored form, each with its
    /// own position, per-event detection, then each organisation's stream with the watermark
    /// at its newest event time minus the lateness.
    struct Harness {
        set: DetectorSet,
        streams: HashMap<Uuid, (StreamState, i64)>,
        lateness: i64,
        next_id: u64,
        events: u64,
        found: Vec<(Uuid, Detection)>,
    }

    impl Harness {
        fn new(lateness: Duration) -> Harness {
            let options = nigehban_hunt::detectors::DetectorOptions { live: true, ..Default::default() };
            let (set, _) = nigehban_hunt::detectors::build(&options).unwrap();
            Harness {
                set,
                streams: HashMap::new(),
                lateness: lateness.as_micros() as i64,
                next_id: 0,
                events: 0,
                found: Vec::new(),
            }
        }

        fn feed(&mut self, batches: &[Batch]) {
            let (events, rejected, note) = to_events(batches, Tlp::AmberStrict);
            assert_eq!(rejected, 0, "records refused: {note:?}");
            let mut observations: HashMap<Uuid, Vec<_>> = HashMap::new();
            let mut newest: HashMap<Uuid, i64> = HashMap::new();
            let mut findings = Findings::default();
            for e in &events {
                let source = Arc::new(Source { name: e.source.clone(), organisation: Some(e.org.to_string()) });
                let mut event = codec::decode(&e.record, source).unwrap();
                self.next_id += 1;
                event.position = Position::Offset(self.next_id);
                let name: Arc<str> = Arc::from(e.source.as_str());
                self.set.detect(&event, &name, &mut findings);
                self.found.extend(findings.detections.drain(..).map(|d| (e.org, d)));
                observations.entry(e.org).or_default().append(&mut findings.observations);
                let ts = e.ts.expect("every demo event has a time");
                let n = newest.entry(e.org).or_insert(i64::MIN);
                *n = (*n).max(ts);
            }
            self.events += events.len() as u64;
            for (org, time) in newest {
                let (state, seen) = self.streams.entry(org).or_insert_with(|| (self.set.stream_state(), i64::MIN));
                *seen = (*seen).max(time);
                let watermark = Timestamp::from_microsecond(*seen - self.lateness).unwrap();
                let mut out = Vec::new();
                self.set.stream(state, observations.remove(&org).unwrap_or_default(), watermark, &mut out);
                self.found.extend(out.into_iter().map(|d| (org, d)));
            }
        }

        /// Titles of the detections at `level` or above, per organisation.
        fn at_least(&self, rank: i64) -> Vec<(Uuid, String)> {
            self.found
                .iter()
                .filter(|(_, d)| d.rule.level as i64 >= rank)
                .map(|(o, d)| (*o, d.rule.title.clone()))
                .collect()
        }
    }

    /// Runs the generator second by second for `seconds` of event time through the harness.
    fn play(g: &mut Generator, h: &mut Harness, from: Timestamp, seconds: u32) -> Vec<AttackStarted> {
        let mut attacks = Vec::new();
        let mut t = from;
        for _ in 0..seconds {
            let next = add_secs(t, 1.0);
            let tick = g.advance(t, next);
            h.feed(&tick.batches);
            attacks.extend(tick.attacks);
            t = next;
        }
        attacks
    }

    #[test]
    fn every_record_parses_and_every_stream_flows() {
        let orgs = all_orgs();
        let mut g = Generator::new(orgs.clone(), &settings(7, 120, true), start());
        for (i, s) in Scenario::ALL.iter().enumerate() {
            let org = orgs.iter().position(|o| s.fits(o.profile)).unwrap();
            g.inject(*s, org, add_secs(start(), i as f64 * 10.0));
        }
        let mut records = 0;
        let mut sources = HashSet::new();
        let mut t = start();
        for _ in 0..180 {
            let next = add_secs(t, 1.0);
            let tick = g.advance(t, next);
            let (events, rejected, note) = to_events(&tick.batches, Tlp::AmberStrict);
            assert_eq!(rejected, 0, "{note:?}");
            let n: usize = tick.batches.iter().map(|b| b.records).sum();
            assert_eq!(events.len(), n, "one event per record");
            for e in &events {
                let ts = e.ts.unwrap();
                // vCenter stamps its events a little before it sends them.
                let earliest = t.as_microsecond() - 1_000_000;
                assert!(ts >= earliest && ts < next.as_microsecond(), "{e:?} outside its second");
                assert!(
                    e.host.is_some() || e.source.ends_with("access.log") || e.source.ends_with("access_log"),
                    "{e:?}"
                );
            }
            records += n;
            sources.extend(tick.batches.iter().map(|b| b.source));
            t = next;
        }
        // About 120 a second, plus the attacks and multi-line records.
        assert!((120 * 180 * 8 / 10..120 * 180 * 14 / 10).contains(&records), "{records}");
        let want: HashSet<&str> =
            ["winlogbeat", "sysmon-linux", "syslog", "www/access.log", "zimbra/access_log", "zeek"].into();
        assert_eq!(sources, want);
    }

    #[test]
    fn records_are_what_the_readers_expect() {
        let orgs = all_orgs();
        let mut g = Generator::new(orgs.clone(), &settings(11, 200, false), start());
        let tick = g.advance(start(), add_secs(start(), 5.0));
        let mut seen = HashSet::new();
        for b in &tick.batches {
            let p = parse(
                b.body.as_bytes(),
                Some(b.format),
                &Target { org: b.org, tlp: Tlp::AmberStrict, source: b.source },
            )
            .unwrap();
            for e in &p.events {
                let source = Arc::new(Source { name: e.source.clone(), organisation: None });
                let event = codec::decode(&e.record, source).unwrap();
                let text = |n: &str| event.get_text(n).map(|v| v.into_owned());
                if let Some(id) = text("EventID") {
                    assert!(text("Channel").is_some() && text("Computer").is_some(), "{}", event.raw);
                    seen.insert(format!("windows {id}"));
                }
                if let Some(d) = text("event.dataset") {
                    seen.insert(d);
                }
                if let Some(p) = text("_path") {
                    assert!(text("id.orig_h").is_some(), "{}", event.raw);
                    seen.insert(format!("zeek {p}"));
                }
            }
        }
        for want in [
            "windows 1",
            "windows 4624",
            "linux.auth",
            "web.access",
            "zimbra.access",
            "zeek conn",
            "zeek dns",
            "postfix",
        ] {
            assert!(seen.contains(want), "{want} not among {seen:?}");
        }
    }

    #[test]
    fn each_attack_is_detected_at_medium_or_above() {
        let orgs = all_orgs();
        for (n, scenario) in Scenario::ALL.iter().enumerate() {
            let mut g = Generator::new(orgs.clone(), &settings(100 + n as u64, 30, false), start());
            let org = orgs.iter().position(|o| scenario.fits(o.profile)).unwrap();
            // The demo's lateness: an attack shows within half a minute of its start.
            let mut h = Harness::new(Duration::from_secs(5));
            let attack = add_secs(start(), 5.0);
            g.inject(*scenario, org, attack);
            let mut t = start();
            let mut first = None;
            for _ in 0..120 {
                let next = add_secs(t, 1.0);
                h.feed(&g.advance(t, next).batches);
                t = next;
                if first.is_none() && !h.at_least(MEDIUM).is_empty() {
                    first = Some(t.duration_since(attack).as_secs_f64());
                }
            }
            let after = first.unwrap_or(f64::INFINITY);
            assert!(after <= 30.0, "{scenario:?}: first detection at medium or above {after} s after the attack began");
            let found = h.at_least(MEDIUM);
            assert!(
                found.iter().any(|(o, _)| *o == orgs[org].org),
                "{scenario:?}: nothing at medium or above: {found:?}"
            );
            assert!(
                found.iter().all(|(o, _)| *o == orgs[org].org),
                "{scenario:?}: other organisations alerted: {found:?}"
            );
            let titles: HashSet<&str> = found.iter().map(|(_, t)| t.as_str()).collect();
            let expected: &[&str] = match scenario {
                Scenario::SshBruteForce => &[
                    "Brute force followed by a successful log-on",
                    "Privileged group change after a brute-forced log-on (Linux)",
                ],
                Scenario::PasswordSpraying => &["Password spraying from one source"],
                Scenario::WindowsTakeover => &[
                    "Brute force followed by a successful log-on (Windows)",
                    "Privileged group change after a brute-forced log-on (Windows)",
                ],
                Scenario::ZimbraExploit => &[
                    "Zimbra Autodiscover XXE exploitation (CVE-2019-9670)",
                    "Zimbra mboximport exploitation (CVE-2022-27925, CVE-2022-37042)",
                    "JSP file written into the Zimbra web application",
                    "JSP page requested from a Zimbra upload or public folder (web shell)",
                ],
                Scenario::VcenterMassDeletion | Scenario::ProxmoxMassDeletion => {
                    &["Mass deletion of virtual machines by one account"]
                }
            };
            for t in expected {
                assert!(titles.contains(t), "{scenario:?}: {t:?} not among {titles:?}");
            }
        }
    }

    #[test]
    fn attacks_show_within_half_a_minute_with_a_short_lateness() {
        // The first attack of the default schedule, whatever it is, is detected within half a
        // minute of its start when the lateness is five seconds (the demo's).
        for seed in 1..=12 {
            let mut g = Generator::new(all_orgs(), &settings(seed, 30, true), start());
            let mut h = Harness::new(Duration::from_secs(5));
            let mut t = start();
            let mut first = None;
            for _ in 0..120 {
                let next = add_secs(t, 1.0);
                let tick = g.advance(t, next);
                h.feed(&tick.batches);
                if first.is_none() {
                    first = tick.attacks.first().cloned();
                }
                t = next;
                if let Some(a) = &first
                    && !h.at_least(MEDIUM).is_empty()
                {
                    let after = t.duration_since(a.at).as_secs_f64();
                    assert!(after <= 30.0, "seed {seed}: {:?} detected {after} s after it started", a.scenario);
                    break;
                }
            }
            let a = first.expect("an attack in the first two minutes");
            assert!(!h.at_least(MEDIUM).is_empty(), "seed {seed}: {:?} not detected", a.scenario);
        }
    }

    #[test]
    fn the_ordinary_mix_raises_nothing() {
        let mut g = Generator::new(all_orgs(), &settings(3, 60, false), start());
        let mut h = Harness::new(Duration::from_secs(10));
        play(&mut g, &mut h, start(), 600);
        assert!(h.events > 30_000, "{}", h.events);
        let found: Vec<_> = h.found.iter().map(|(_, d)| (d.rule.level, d.rule.title.clone())).collect();
        assert!(h.at_least(LOW).is_empty(), "{found:?}");
    }

    #[test]
    fn attacks_follow_the_schedule_and_the_seed() {
        let run = |seed: u64| {
            let mut g = Generator::new(all_orgs(), &settings(seed, 0, true), start());
            let mut attacks = Vec::new();
            let mut t = start();
            for _ in 0..60 {
                let next = add_secs(t, 60.0);
                attacks.extend(g.advance(t, next).attacks);
                t = next;
            }
            attacks
        };
        let a = run(42);
        let first = a[0].at.duration_since(start()).as_secs_f64();
        assert!((20.0..30.0).contains(&first), "{first}");
        for w in a.windows(2) {
            let gap = w[1].at.duration_since(w[0].at).as_secs_f64();
            assert!((60.0..180.0).contains(&gap), "{gap}");
        }
        // Each scenario once before any repeats.
        let firsts: HashSet<Scenario> = a.iter().take(Scenario::ALL.len()).map(|a| a.scenario).collect();
        assert_eq!(firsts.len(), Scenario::ALL.len());
        let key = |a: &[AttackStarted]| a.iter().map(|a| (a.at, a.scenario, a.org, a.host.clone())).collect::<Vec<_>>();
        assert_eq!(key(&a), key(&run(42)));
        assert_ne!(key(&a), key(&run(43)));
        // The attacks do not depend on how time is cut into steps, nor on the ordinary mix.
        let mut g = Generator::new(all_orgs(), &settings(42, 30, true), start());
        let mut stepped = Vec::new();
        let mut t = start();
        for i in 0..1200 {
            let next = add_secs(t, 0.5 + f64::from(i % 5) * 0.3);
            stepped.extend(g.advance(t, next).attacks);
            t = next;
        }
        let later = t;
        assert_eq!(key(&stepped), key(&a.into_iter().filter(|a| a.at < later).collect::<Vec<_>>()));
        // The same seed gives the same records.
        let records = |seed| {
            let mut g = Generator::new(all_orgs(), &settings(seed, 50, true), start());
            g.advance(start(), add_secs(start(), 40.0)).batches.into_iter().map(|b| b.body).collect::<Vec<_>>()
        };
        assert_eq!(records(5), records(5));
    }
}
