//! Live streams against the offline pass: the same observations fed in batches of any size,
//! out of order within the allowed lateness, with the state saved and restored between
//! batches, give the detections `correlate` gives over all of them at once (Sigma correlation
//! rules of every type, first seen and "after"); live beaconing gives the same detections
//! whatever the batches, and differs from the offline score as documented.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use nigehban_detect::{
    BeaconConfig, BeaconDetector, Detection, Detector, DetectorSet, Findings, FirstSeenDetector, FirstSeenRule,
    Observation, SigmaDetector, StateError, StreamState,
};
use nigehban_event::{Event, Position, Product, Source, Value};
use nigehban_sigma::{RuleSet, RuleSetBuilder};

/// Correlation rules of every type, with conditions decided at once and at the end of the
/// window, and a chain.
const SIGMA: &str = r#"
title: Failed logon
name: failed_logon
logsource: {product: windows, service: security}
detection: {selection: {EventID: 4625}, condition: selection}
---
title: Successful logon
name: successful_logon
logsource: {product: windows, service: security}
detection: {selection: {EventID: 4624}, condition: selection}
---
title: Brute force
id: brute
name: brute
correlation: {type: event_count, rules: [failed_logon], group-by: [TargetUserName], timespan: 5m, condition: {gte: 3}}
---
title: Spraying
id: spraying
correlation: {type: value_count, rules: [failed_logon], group-by: [IpAddress], timespan: 10m, condition: {gte: 2, field: TargetUserName}}
---
title: Failed and successful
id: temporal
correlation: {type: temporal, rules: [failed_logon, successful_logon], group-by: [IpAddress], timespan: 10m}
---
title: Success after failure
id: ordered
correlation: {type: temporal_ordered, rules: [failed_logon, successful_logon], group-by: [TargetUserName], timespan: 5m}
---
title: Slow brute force
id: slow
correlation: {type: event_count, rules: [failed_logon], group-by: [TargetUserName], timespan: 10m, condition: {gte: 2, lte: 4}}
---
title: Few users
id: few-users
correlation: {type: value_count, rules: [failed_logon], group-by: [IpAddress], timespan: 10m, condition: {lte: 1, field: TargetUserName}}
---
title: Failure without success
id: not-success
correlation: {type: temporal, rules: [failed_logon, successful_logon], group-by: [IpAddress], timespan: 5m, condition: failed_logon and not successful_logon}
---
title: Success after brute force
id: chain
correlation: {type: temporal_ordered, rules: [brute, successful_logon], group-by: [TargetUserName], timespan: 10m}
"#;

const FIRST_SEEN: &str = r#"
- id: new-country
  title: Sign-in from a new country
  level: medium
  where: {event.category: authentication, event.outcome: success}
  entity: [user.name]
  value: [source.geo.country_iso_code]
  learning: 2h
- id: any-deletion
  title: First deletion by an account
  level: medium
  where: {event.category: vm, event.type: deletion}
  entity: [user.name]
  learning: 1h
- id: deletion-after-new-country
  title: Deletion after a sign-in from a new country
  level: high
  where: {event.category: vm, event.type: deletion}
  entity: [user.name]
  after: {rules: [new-country], within: 30m}
"#;

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

/// A repeatable pseudo-random sequence.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        self.below(1 << 20) as f64 / (1u64 << 20) as f64
    }
}

fn rules(yaml: &str) -> Arc<RuleSet> {
    let mut b = RuleSetBuilder::new();
    b.add_yaml("stream.yml", yaml);
    let rs = b.build();
    assert!(rs.report().failed.is_empty(), "{:?}", rs.report().failed);
    Arc::new(rs)
}

fn first_seen() -> Vec<FirstSeenRule> {
    serde_saphyr::from_str(FIRST_SEEN).unwrap()
}

fn beacon_config() -> BeaconConfig {
    BeaconConfig {
        min_connections: 12,
        evaluate_every: "1h".into(),
        realert_after: "12h".into(),
        ..BeaconConfig::default()
    }
}

fn set_with(sigma: &str, first: Vec<FirstSeenRule>) -> DetectorSet {
    let mut set = DetectorSet::new();
    set.push(Box::new(SigmaDetector::new(rules(sigma))));
    set.push(Box::new(FirstSeenDetector::new(first).unwrap()));
    set.push(Box::new(BeaconDetector::new(beacon_config()).unwrap().for_streams()));
    set
}

fn set() -> DetectorSet {
    set_with(SIGMA, first_seen())
}

fn event(line: u64, secs: i64, product: Product, fields: &[(&str, Value)]) -> Event {
    let mut e = Event::new(Source::file("stream"), Position::Line(line), product, "json");
    e.timestamp = Some(at(secs));
    for (k, v) in fields {
        e.set(*k, v.clone());
    }
    e
}

fn logon(line: u64, secs: i64, id: i64, user: &str, ip: &str) -> Event {
    event(
        line,
        secs,
        Product::Windows,
        &[
            ("Channel", Value::str("Security")),
            ("EventID", Value::Int(id)),
            ("TargetUserName", Value::str(user)),
            ("IpAddress", Value::str(ip)),
        ],
    )
}

fn signin(line: u64, secs: i64, user: &str, country: &str) -> Event {
    event(
        line,
        secs,
        Product::Other,
        &[
            ("event.category", Value::str("authentication")),
            ("event.outcome", Value::str("success")),
            ("user.name", Value::str(user)),
            ("source.geo.country_iso_code", Value::str(country)),
        ],
    )
}

fn deletion(line: u64, secs: i64, user: &str) -> Event {
    event(
        line,
        secs,
        Product::Other,
        &[
            ("event.category", Value::str("vm")),
            ("event.type", Value::str("deletion")),
            ("user.name", Value::str(user)),
        ],
    )
}

fn conn(line: u64, secs: f64, src: &str, dst: &str, bytes: i64) -> Event {
    let mut e = event(
        line,
        0,
        Product::Zeek,
        &[
            ("_path", Value::str("conn")),
            ("id.orig_h", Value::str(src)),
            ("id.resp_h", Value::str(dst)),
            ("id.resp_p", Value::Int(443)),
            ("proto", Value::str("tcp")),
            ("orig_bytes", Value::Int(bytes)),
            ("resp_bytes", Value::Int(100)),
        ],
    );
    e.timestamp = Timestamp::from_microsecond(((T0 as f64 + secs) * 1e6) as i64).ok();
    e
}

/// Logons, sign-ins, deletions and connections over about two days, in time order.
/// `distinct`: no two events at the same time (so that arrival order cannot matter).
fn events(rng: &mut Rng, distinct: bool) -> Vec<Event> {
    let mut out = Vec::new();
    let mut t = 0i64;
    let users = ["alice", "bob", "carol"];
    let ips = ["10.0.0.1", "10.0.0.2"];
    let countries = ["PK", "PK", "PK", "AE", "NL"];
    let mut line = 0;
    while t < 2 * 86_400 {
        t += if rng.below(40) == 0 { 3_600 + rng.below(7_200) as i64 } else { rng.below(120) as i64 };
        if distinct {
            t += 1;
        }
        line += 1;
        let user = users[rng.below(3) as usize];
        let e = match rng.below(10) {
            0..=4 => logon(line, t, 4625, user, ips[rng.below(2) as usize]),
            5 | 6 => logon(line, t, 4624, user, ips[rng.below(2) as usize]),
            7 | 8 => signin(line, t, user, countries[rng.below(5) as usize]),
            _ => deletion(line, t, user),
        };
        out.push(e);
    }
    // A beacon every 10 minutes ± 20% and browsing, for the whole time.
    let mut b = 0.0;
    while b < 2.0 * 86_400.0 {
        b += 600.0 * (0.8 + 0.4 * rng.unit());
        line += 1;
        out.push(conn(line, b + 0.5, "10.1.1.5", "203.0.113.50", 320 + rng.below(3) as i64));
        if rng.below(3) == 0 {
            line += 1;
            out.push(conn(line, b + 0.25, "10.1.1.6", "198.51.100.7", rng.below(50_000) as i64));
        }
    }
    out.sort_by_key(|e| e.timestamp);
    out
}

fn observe(set: &DetectorSet, events: &[Event]) -> (Vec<Detection>, Vec<Observation>) {
    let mut f = Findings::default();
    let source: Arc<str> = Arc::from("stream");
    for e in events {
        set.detect(e, &source, &mut f);
    }
    (f.detections, f.observations)
}

fn key(d: &Detection) -> String {
    format!("{} {:?} {} {} {:?}", d.rule.id, d.timestamp, d.source, d.position, d.fields)
}

fn keys<'a>(ds: impl IntoIterator<Item = &'a Detection>) -> Vec<String> {
    let mut out: Vec<String> = ds.into_iter().map(key).collect();
    out.sort();
    out
}

fn is_beacon(d: &Detection) -> bool {
    d.rule.id == "nigehban-beaconing"
}

/// Cuts time-ordered observations into batches, each with a watermark no later than the next
/// batch's first observation (minus some lateness). With `shuffle`, observations not older
/// than the watermark may arrive a batch late and every batch is shuffled.
fn batches(rng: &mut Rng, obs: Vec<Observation>, shuffle: bool) -> Vec<(Vec<Observation>, Timestamp)> {
    let mut out: Vec<(Vec<Observation>, Timestamp)> = Vec::new();
    let mut current = Vec::new();
    let n = obs.len();
    let cuts = 1 + rng.below(12) as usize;
    let mut points: Vec<usize> = (0..cuts).map(|_| rng.below(n as u64) as usize).collect();
    points.sort();
    for (i, o) in obs.into_iter().enumerate() {
        if points.contains(&i) && !current.is_empty() {
            let next = o.event.timestamp.unwrap();
            let lateness = SignedDuration::from_secs(rng.below(1_800) as i64);
            out.push((std::mem::take(&mut current), next.checked_sub(lateness).unwrap()));
        }
        current.push(o);
    }
    out.push((current, Timestamp::MAX));
    if shuffle {
        for i in 0..out.len() - 1 {
            let watermark = out[i].1;
            let (keep, delay): (Vec<_>, Vec<_>) = std::mem::take(&mut out[i].0)
                .into_iter()
                .partition(|o| o.event.timestamp.unwrap() < watermark || rng.below(2) == 0);
            out[i].0 = keep;
            out[i + 1].0.extend(delay);
        }
        for (b, _) in &mut out {
            for i in (1..b.len()).rev() {
                b.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
    }
    out
}

fn run_stream(
    set: &DetectorSet,
    batches: Vec<(Vec<Observation>, Timestamp)>,
    restarts: &[usize],
) -> (Vec<Detection>, StreamState) {
    let mut state = set.stream_state();
    let mut out = Vec::new();
    for (i, (obs, watermark)) in batches.into_iter().enumerate() {
        if restarts.contains(&i) {
            let bytes = state.to_bytes().unwrap();
            state = set.restore_stream(&bytes).unwrap();
            assert!(state.restore_notes().is_empty(), "{:?}", state.restore_notes());
        }
        set.stream(&mut state, obs, watermark, &mut out);
    }
    (out, state)
}

#[test]
fn states_can_move_between_threads() {
    fn send<T: Send + Sync>() {}
    send::<StreamState>();
    send::<DetectorSet>();
}

#[test]
fn streams_in_any_batches_give_the_offline_detections() {
    let set = set();
    let mut fired = std::collections::BTreeSet::new();
    for seed in 0..24u64 {
        let mut rng = Rng::new(seed);
        let shuffle = seed % 2 == 1;
        let (_, obs) = observe(&set, &events(&mut rng, shuffle));
        let offline: Vec<Detection> = set.correlate(obs.clone());
        let whole = run_stream(&set, vec![(obs.clone(), Timestamp::MAX)], &[]).0;
        let restarts: Vec<usize> = (0..3).map(|_| rng.below(8) as usize).collect();
        let (live, state) = run_stream(&set, batches(&mut rng, obs.clone(), shuffle), &restarts);

        let not_beacon = |ds: &[Detection]| keys(ds.iter().filter(|d| !is_beacon(d)));
        assert_eq!(not_beacon(&offline), not_beacon(&live), "seed {seed}");
        // Live beaconing depends on event time only, not on the batches or restarts.
        let beacon = |ds: &[Detection]| keys(ds.iter().filter(|d| is_beacon(d)));
        assert_eq!(beacon(&whole), beacon(&live), "seed {seed}");
        assert_eq!(not_beacon(&whole), not_beacon(&live), "seed {seed}");

        let stats = state.stats();
        assert_eq!(stats.observations, obs.len() as u64);
        assert_eq!((stats.late_dropped, stats.buffered), (0, 0));
        assert_eq!(stats.detections, live.len() as u64);
        fired.extend(live.iter().map(|d| d.rule.id.clone()));
    }
    // Every rule fired somewhere, so that every one was compared.
    for id in ["brute", "spraying", "temporal", "ordered", "slow", "few-users", "not-success", "chain"] {
        assert!(fired.contains(id), "{id} never fired: {fired:?}");
    }
    for id in ["new-country", "any-deletion", "deletion-after-new-country", "nigehban-beaconing"] {
        assert!(fired.contains(id), "{id} never fired: {fired:?}");
    }
}

#[test]
fn the_offline_pass_is_unchanged_by_the_reorder_buffer() {
    // `correlate` is one batch with the watermark at the end of time: the same detections as
    // a stream fed one observation at a time, each with its own time as watermark.
    let set = set();
    let mut rng = Rng::new(99);
    let (_, obs) = observe(&set, &events(&mut rng, false));
    let offline = set.correlate(obs.clone());
    let mut state = set.stream_state();
    let mut live = Vec::new();
    for o in obs {
        let t = o.event.timestamp.unwrap();
        set.stream(&mut state, vec![o], t, &mut live);
    }
    set.stream(&mut state, Vec::new(), Timestamp::MAX, &mut live);
    let not_beacon = |ds: &[Detection]| keys(ds.iter().filter(|d| !is_beacon(d)));
    assert_eq!(not_beacon(&offline), not_beacon(&live));
}

#[test]
fn late_observations_are_counted_not_used() {
    let set = set();
    let mut state = set.stream_state();
    let mut out = Vec::new();
    let (_, obs) = observe(&set, &[logon(1, 100, 4625, "alice", "10.0.0.1"), logon(2, 200, 4625, "alice", "10.0.0.1")]);
    set.stream(&mut state, obs, at(150), &mut out);
    assert_eq!(state.stats().buffered, 1, "200 waits for the watermark");
    // 120 is older than the watermark 150: dropped and counted. 160 is not late.
    let (_, late) =
        observe(&set, &[logon(3, 120, 4625, "alice", "10.0.0.1"), logon(4, 160, 4625, "alice", "10.0.0.1")]);
    set.stream(&mut state, late, at(150), &mut out);
    let stats = state.stats();
    assert_eq!((stats.observations, stats.late_dropped, stats.buffered), (4, 1, 2));
    set.stream(&mut state, Vec::new(), Timestamp::MAX, &mut out);
    // Three failures (100, 160, 200) within five minutes: brute force, with the late one left out.
    let brute: Vec<&Detection> = out.iter().filter(|d| d.rule.id == "brute").collect();
    assert_eq!(brute.len(), 1);
    assert!(brute[0].fields.iter().any(|(k, v)| k == "count" && v == "3"), "{:?}", brute[0].fields);
    assert_eq!(state.watermark(), Some(Timestamp::MAX));
}

#[test]
fn windows_close_when_the_watermark_passes_them() {
    let set = set();
    let mut state = set.stream_state();
    let mut out = Vec::new();
    let (_, obs) = observe(&set, &[logon(1, 0, 4625, "dave", "10.0.0.9"), logon(2, 30, 4625, "dave", "10.0.0.9")]);
    set.stream(&mut state, obs, at(31), &mut out);
    assert!(!out.iter().any(|d| d.rule.id == "slow"), "the window [0, 600] is still open");
    // No event, only time passing (a quiet stream): the window is decided.
    set.stream(&mut state, Vec::new(), at(601), &mut out);
    assert_eq!(out.iter().filter(|d| d.rule.id == "slow").count(), 1);
    assert_eq!(state.stats().buffered, 0);
}

fn beacon_stream(days: f64, period: f64) -> Vec<Observation> {
    let set = {
        let mut s = DetectorSet::new();
        s.push(Box::new(BeaconDetector::new(beacon_config()).unwrap().for_streams()));
        s
    };
    let mut rng = Rng::new(7);
    let mut evs = Vec::new();
    let mut t = 0.0;
    let mut line = 0;
    while t < days * 86_400.0 {
        line += 1;
        evs.push(conn(line, t, "10.1.1.5", "203.0.113.50", 320 + rng.below(3) as i64));
        t += period * (0.9 + 0.2 * rng.unit());
    }
    observe(&set, &evs).1
}

#[test]
fn live_beaconing_reports_once_per_realert_interval_and_forgets_idle_pairs() {
    let detector = BeaconDetector::new(beacon_config()).unwrap().for_streams();
    let obs = beacon_stream(3.0, 600.0);
    // Offline: one detection for the pair, at the end.
    assert_eq!(detector.correlate(obs.clone()).len(), 1);
    // Live, fed an hour at a time: reported at the first evaluation with 12 connections (the
    // third hour), then every 12 hours while it lasts.
    let mut state = detector.stream_state();
    let mut out = Vec::new();
    let mut hour = 1;
    let mut batch = Vec::new();
    for o in obs {
        if o.event.timestamp.unwrap() >= at(hour * 3600) {
            detector.stream(&mut state, std::mem::take(&mut batch), at(hour * 3600), &mut out);
            hour += 1;
        }
        batch.push(o);
    }
    detector.stream(&mut state, batch, at(hour * 3600), &mut out);
    let times: Vec<Timestamp> =
        out.iter().map(|d| d.fields.iter().find(|f| f.0 == "evaluated_at").unwrap().1.parse().unwrap()).collect();
    assert_eq!(times.len(), 6, "{times:?}");
    assert!(times[0] <= at(4 * 3600), "{times:?}");
    assert_eq!(times[0].as_second() % 3600, 0, "evaluations on the hour");
    for w in times.windows(2) {
        assert_eq!(w[1].duration_since(w[0]), SignedDuration::from_hours(12), "{times:?}");
    }
    let stats = state.stats();
    assert!(stats.realerts_suppressed > 50, "{stats:?}");
    assert_eq!(stats.state_entries, 1);
    // Three quiet days later the pair is forgotten.
    detector.stream(&mut state, Vec::new(), at(6 * 86_400), &mut out);
    assert_eq!(state.stats().state_entries, 0);
    assert_eq!(out.len(), 6);
}

#[test]
fn live_beaconing_state_is_bounded() {
    let config = BeaconConfig { max_pairs: 2, max_connections_per_pair: 5, ..beacon_config() };
    let detector = BeaconDetector::new(config).unwrap().for_streams();
    let mut f = Findings::default();
    for i in 0..10 {
        for j in 0..4 {
            let e = conn(i * 4 + j, i as f64 * 60.0, "10.0.0.1", &format!("203.0.113.{j}"), 10);
            detector.detect(&e, &Arc::from("x"), &mut f);
        }
    }
    let mut state = detector.stream_state();
    detector.stream(&mut state, f.observations, Timestamp::MAX, &mut Vec::new());
    let stats = state.stats();
    assert_eq!(stats.pairs_not_kept, 2 * 10);
    assert_eq!(stats.connections_not_kept, 2 * 5);
}

#[test]
fn a_beacon_detector_built_for_hunts_keeps_nothing_for_streams() {
    let detector = BeaconDetector::new(beacon_config()).unwrap();
    assert!(!detector.is_for_streams());
    let mut f = Findings::default();
    detector.detect(&conn(1, 0.0, "10.0.0.1", "203.0.113.1", 10), &Arc::from("x"), &mut f);
    assert!(f.observations.is_empty());
    let mut state = detector.stream_state();
    detector.stream(&mut state, f.observations, Timestamp::MAX, &mut Vec::new());
    let state = detector.restore_stream(&state.to_bytes().unwrap()).unwrap();
    assert_eq!(state.stats(), Default::default());
    // A state saved by a detector built for streams does not fit it.
    let live = BeaconDetector::new(beacon_config()).unwrap().for_streams();
    let saved = live.stream_state().to_bytes().unwrap();
    assert!(matches!(detector.restore_stream(&saved), Err(StateError::Mismatch(_))));
}

#[test]
fn first_seen_values_are_bounded_and_counted() {
    let mut rules = first_seen();
    rules[0].max_entries = 2;
    rules[0].learning = None;
    let detector = FirstSeenDetector::new(rules).unwrap();
    let mut f = Findings::default();
    for (i, c) in ["PK", "AE", "NL", "NL"].iter().enumerate() {
        detector.detect(&signin(i as u64, i as i64, "alice", c), &Arc::from("x"), &mut f);
    }
    let mut state = detector.stream_state();
    let mut out = Vec::new();
    detector.stream(&mut state, f.observations, Timestamp::MAX, &mut out);
    // NL is not remembered, so it is reported each time: never dropped silently.
    assert_eq!(out.len(), 4);
    let stats = state.stats();
    // Two values, and alice's detections for the "after" rule.
    assert_eq!((stats.values_not_kept, stats.state_entries), (2, 3));
}

#[test]
fn a_restore_refuses_garbage_and_other_rules_and_keeps_what_still_fits() {
    let set = set();
    let mut rng = Rng::new(3);
    let (_, obs) = observe(&set, &events(&mut rng, false));
    let half = obs.len() / 2;
    let mut state = set.stream_state();
    let watermark = obs[half].event.timestamp.unwrap();
    set.stream(&mut state, obs[..half].to_vec(), watermark, &mut Vec::new());
    let bytes = state.to_bytes().unwrap();

    // Garbage, truncation, another version: errors, never a panic.
    for bad in [&b""[..], b"\xff\xfe", b"{}", b"[1,2]", &bytes[..bytes.len() / 2]] {
        assert!(matches!(set.restore_stream(bad), Err(StateError::Invalid(_))), "{:?}", String::from_utf8_lossy(bad));
    }
    let mut other: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    other["format"] = serde_json::json!(2);
    let e = set.restore_stream(&serde_json::to_vec(&other).unwrap()).unwrap_err();
    assert_eq!(e, StateError::Format(2));
    assert!(e.to_string().contains("format 2"), "{e}");
    // Damaged inside a part: an error too.
    let mut damaged: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    damaged["state"]["parts"][0]["engine"]["rules"] = serde_json::json!([{"groups": 7}]);
    assert!(set.restore_stream(&serde_json::to_vec(&damaged).unwrap()).is_err());

    // A detector alone refuses a state saved for other rules.
    let fewer = SIGMA.split("\n---\n").filter(|r| !r.contains("id: chain")).collect::<Vec<_>>().join("\n---\n");
    let sigma = SigmaDetector::new(rules(&fewer));
    let saved = sigma.stream_state().to_bytes().unwrap();
    let e = SigmaDetector::new(rules(SIGMA)).restore_stream(&saved).unwrap_err();
    assert!(matches!(e, StateError::Mismatch(_)), "{e}");
    assert!(FirstSeenDetector::new(first_seen()).unwrap().restore_stream(&saved).is_err());

    // A set restores the parts that fit: other correlation rules and one first-seen rule
    // changed; the beacon pairs and the other first-seen rules keep what they learnt.
    let mut changed = first_seen();
    changed[1].learning = Some("3h".into());
    let other_set = set_with(&fewer, changed);
    let restored = other_set.restore_stream(&bytes).unwrap();
    let notes = restored.restore_notes();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].starts_with("part 0 starts afresh: the correlation rules changed"), "{notes:?}");
    assert!(notes[1].contains("`any-deletion` starts afresh: it changed"), "{notes:?}");
    let before = state.stats();
    let after = restored.stats();
    assert!(after.observations < before.observations, "the Sigma part's counters start afresh");
    assert!(after.state_entries > 0 && after.state_entries < before.state_entries, "{before:?} {after:?}");
}
