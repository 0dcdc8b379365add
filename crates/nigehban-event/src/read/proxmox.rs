//! Proxmox VE's task and authentication lines over syslog (`pvedaemon`, `pveproxy`, `pvesh`,
//! `qm`, `pct`, `pvescheduler`, `pve-guests`, `vzdump`):
//!
//! ```text
//! <root@pam> starting task UPID:pve1:0000ABCD:0012AB34:65E1A2B3:qmdestroy:101:root@pam:
//! <root@pam> end task UPID:pve1:0000ABCD:0012AB34:65E1A2B3:qmdestroy:101:root@pam: OK
//! authentication failure; rhost=::ffff:203.0.113.9 user=root@pam msg=Authentication failure
//! <root@pam> successful auth for user 'root@pam'
//! ```
//!
//! A UPID is `UPID:node:pid:pstart:starttime:type:id:user:` (pid, pstart and starttime in
//! hexadecimal). Fields: `upid`, `upid.node`, `upid.pid`, `upid.type`, `upid.id`, `upid.user`,
//! `upid.starttime` (seconds since the epoch), `task.phase` (`start` or `end`),
//! `task.status` (the text after the UPID on an `end task` line: `OK` or the error).
//!
//! Normalized: `event.action` is the task type (`qmdestroy`, `vzcreate`, `qmstart` …);
//! `user.name` the task's user (`root@pam`, `deploy@pve!token`); guest tasks are
//! `event.category` `vm` with `cloud.provider` `proxmox`, `target.name` the VM / container id
//! and `event.type` `deletion` (`qmdestroy`, `vzdestroy`), `creation` (`qmcreate`,
//! `vzcreate`, `qmclone`, `qmrestore`, `vzrestore`), `start` (`qmstart`, `vzstart`,
//! `qmresume`), `stop` (`qmstop`, `qmshutdown`, `vzstop`, `vzshutdown`, `qmsuspend`) or
//! `change` (`qmconfig`, `qmmigrate`, `vzmigrate`, `qmrollback`). A task is logged twice:
//! its `starting task` line has `event.outcome` `unknown`, its `end task` line `success`
//! (`OK`) or `failure`, so count one of the two. Log-ons are `event.category`
//! `authentication` with `user.name` and `source.ip`.

use super::enrich::{authentication, ip, put, put_int, value_after, vm_event};
use crate::event::Event;

pub(crate) fn is_proxmox_app(app: &str) -> bool {
    matches!(
        app,
        "pvedaemon"
            | "pveproxy"
            | "pvesh"
            | "qm"
            | "pct"
            | "pvescheduler"
            | "pve-guests"
            | "vzdump"
            | "pve-ha-lrm"
            | "pve-ha-crm"
    )
}

/// A parsed UPID.
struct Upid<'a> {
    node: &'a str,
    pid: Option<i64>,
    starttime: Option<i64>,
    kind: &'a str,
    id: &'a str,
    user: &'a str,
}

/// Reads a UPID at the start of `s`; returns it, its text, and what follows it.
fn parse_upid(s: &str) -> Option<(Upid<'_>, &str, &str)> {
    let body = s.strip_prefix("UPID:")?;
    let mut parts = body.splitn(7, ':');
    let node = parts.next()?;
    let pid = parts.next()?;
    let _pstart = parts.next()?;
    let starttime = parts.next()?;
    let kind = parts.next()?;
    let id = parts.next()?;
    let rest = parts.next()?;
    // The user ends at the next ':' (the UPID's last character).
    let (user, after) = rest.split_once(':')?;
    if node.is_empty() || kind.is_empty() || user.is_empty() || user.contains(' ') {
        return None;
    }
    let text_len = "UPID:".len() + body.len() - after.len();
    let upid = Upid {
        node,
        pid: i64::from_str_radix(pid, 16).ok(),
        starttime: i64::from_str_radix(starttime, 16).ok(),
        kind,
        id,
        user,
    };
    Some((upid, &s[..text_len], after))
}

pub(crate) fn enrich(event: &mut Event, message: &str) {
    // `<root@pam> ` prefix: the user the daemon acts for.
    let (actor, body) = match message.strip_prefix('<').and_then(|m| m.split_once("> ")) {
        Some((actor, body)) if !actor.contains(' ') => (Some(actor), body),
        _ => (None, message),
    };

    let phase = if body.starts_with("starting task ") {
        Some("start")
    } else if body.starts_with("end task ") {
        Some("end")
    } else {
        None
    };
    if let Some(at) = body.find("UPID:")
        && let Some((upid, text, after)) = parse_upid(&body[at..])
    {
        put(event, "upid", text);
        put(event, "upid.node", upid.node);
        if let Some(pid) = upid.pid {
            put_int(event, "upid.pid", pid);
        }
        if let Some(start) = upid.starttime {
            put_int(event, "upid.starttime", start);
        }
        put(event, "upid.type", upid.kind);
        if !upid.id.is_empty() {
            put(event, "upid.id", upid.id);
        }
        put(event, "upid.user", upid.user);
        put(event, "user.name", upid.user);
        if let Some(phase) = phase {
            put(event, "task.phase", phase);
            put(event, "event.action", upid.kind);
            let outcome = if phase == "end" {
                let status = after.trim();
                if !status.is_empty() {
                    put(event, "task.status", status);
                }
                if status == "OK" { "success" } else { "failure" }
            } else {
                "unknown"
            };
            if let Some(kind) = task_kind(upid.kind) {
                vm_event(event, kind, "proxmox", Some(upid.id));
                put(event, "event.outcome", outcome);
            } else if phase == "end" {
                put(event, "event.outcome", outcome);
            }
        }
        return;
    }

    // authentication failure; rhost=::ffff:203.0.113.9 user=root@pam msg=Authentication failure
    if body.contains("authentication failure;") {
        if let Some(addr) = value_after(body, "rhost=", &[' ']).and_then(ip) {
            put(event, "source.ip", addr);
        }
        if let Some(user) = value_after(body, "user=", &[' ']).filter(|u| !u.is_empty()) {
            put(event, "user.name", user);
        }
        if let Some(msg) = value_after(body, "msg=", &[]) {
            put(event, "error.message", msg);
        }
        authentication(event, "failure");
        return;
    }
    // successful auth for user 'root@pam'
    if let Some(rest) = body.strip_prefix("successful auth for user ") {
        let user = rest.trim().trim_matches('\'');
        if !user.is_empty() {
            put(event, "user.name", user);
        }
        authentication(event, "success");
        return;
    }
    if let Some(actor) = actor {
        put(event, "user.name", actor);
    }
}

/// `event.type` of a guest task.
fn task_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "qmdestroy" | "vzdestroy" => "deletion",
        "qmcreate" | "vzcreate" | "qmclone" | "vzclone" | "qmrestore" | "vzrestore" | "qmtemplate" | "vztemplate" => {
            "creation"
        }
        "qmstart" | "vzstart" | "qmresume" | "vzresume" | "qmreboot" | "vzreboot" => "start",
        "qmstop" | "qmshutdown" | "vzstop" | "vzshutdown" | "qmsuspend" | "vzsuspend" => "stop",
        "qmconfig" | "vzconfig" | "qmmigrate" | "vzmigrate" | "qmrollback" | "vzrollback" | "qmmove" | "qmresize" => {
            "change"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use crate::event::{Event, Source};
    use crate::read::syslog::SyslogFormat;
    use crate::read::{EventStub, Item, LineFormat, TextReader};
    use crate::value::Value;

    fn event(line: &str) -> Event {
        let source = Source::file("daemon.log");
        match SyslogFormat::with_year(2024).parse_line(line, EventStub { source: &source, line: 1 }) {
            Ok(Some(e)) => e,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn text(e: &Event, name: &str) -> Option<String> {
        e.get_exact(name).and_then(Value::as_text).map(|t| t.into_owned())
    }

    #[test]
    fn vm_destroy_task() {
        let e = event(
            "Mar  1 10:00:00 pve1 pvedaemon[43981]: <root@pam> starting task UPID:pve1:0000ABCD:0012AB34:65E1A2B3:qmdestroy:101:root@pam:",
        );
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("proxmox.tasks"));
        assert_eq!(text(&e, "host.name").as_deref(), Some("pve1"));
        assert_eq!(text(&e, "upid").as_deref(), Some("UPID:pve1:0000ABCD:0012AB34:65E1A2B3:qmdestroy:101:root@pam:"));
        assert_eq!(text(&e, "upid.node").as_deref(), Some("pve1"));
        assert_eq!(e.get_exact("upid.pid"), Some(&Value::Int(0xABCD)));
        assert_eq!(e.get_exact("upid.starttime"), Some(&Value::Int(0x65E1A2B3)));
        assert_eq!(text(&e, "upid.type").as_deref(), Some("qmdestroy"));
        assert_eq!(text(&e, "upid.id").as_deref(), Some("101"));
        assert_eq!(text(&e, "task.phase").as_deref(), Some("start"));
        assert_eq!(text(&e, "event.action").as_deref(), Some("qmdestroy"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("vm"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("unknown"));
        assert_eq!(text(&e, "cloud.provider").as_deref(), Some("proxmox"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("101"));
        assert_eq!(text(&e, "target.type").as_deref(), Some("vm"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("root@pam"));

        let e = event(
            "Mar  1 10:00:02 pve1 pvedaemon[43981]: <root@pam> end task UPID:pve1:0000ABCD:0012AB34:65E1A2B3:qmdestroy:101:root@pam: OK",
        );
        assert_eq!(text(&e, "task.phase").as_deref(), Some("end"));
        assert_eq!(text(&e, "task.status").as_deref(), Some("OK"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        let e = event(
            "Mar  1 10:00:02 pve1 pvedaemon[43981]: <root@pam> end task UPID:pve1:0000ABCE:0012AB34:65E1A2B4:vzdestroy:102:deploy@pve!ci: CT is locked (backup)",
        );
        assert_eq!(text(&e, "task.status").as_deref(), Some("CT is locked (backup)"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("deploy@pve!ci"));
    }

    #[test]
    fn other_tasks() {
        for (kind, want) in [
            ("qmcreate", "creation"),
            ("vzcreate", "creation"),
            ("qmstart", "start"),
            ("qmshutdown", "stop"),
            ("qmstop", "stop"),
        ] {
            let e = event(&format!(
                "Mar  1 10:00:00 pve1 qm[1]: <root@pam> starting task UPID:pve1:00000001:00000002:65E1A2B3:{kind}:200:root@pam:"
            ));
            assert_eq!(text(&e, "event.type").as_deref(), Some(want), "{kind}");
        }
        // Not a guest task: action only.
        let e = event(
            "Nov 09 03:05:39 pve pvedaemon[30421]: <root@pam> starting task UPID:pve:000079D3:00083FE1:654BDC03:vncshell::root@pam:",
        );
        assert_eq!(text(&e, "event.action").as_deref(), Some("vncshell"));
        assert_eq!(e.get_exact("event.category"), None);
        assert_eq!(e.get_exact("upid.id"), None);
        // A worker line naming the UPID: fields, no action.
        let e = event(
            "Mar  1 10:00:00 pve1 qm[2]: start VM 900: UPID:pve2:00000003:00000004:65E1A2B3:qmstart:900:root@pam:",
        );
        assert_eq!(text(&e, "upid.type").as_deref(), Some("qmstart"));
        assert_eq!(e.get_exact("event.action"), None);
        assert_eq!(e.get_exact("event.category"), None);
        // Broken UPIDs are ignored.
        let e = event("Mar  1 10:00:00 pve1 qm[2]: <root@pam> starting task UPID:pve2:1:2");
        assert_eq!(e.get_exact("upid"), None);
        assert_eq!(text(&e, "user.name").as_deref(), Some("root@pam"));
    }

    #[test]
    fn authentication_lines() {
        let e = event(
            "Mar  1 10:05:00 pve1 pvedaemon[1234]: authentication failure; rhost=::ffff:203.0.113.9 user=root@pam msg=Authentication failure",
        );
        assert_eq!(text(&e, "event.category").as_deref(), Some("authentication"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.9"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("root@pam"));
        assert_eq!(text(&e, "error.message").as_deref(), Some("Authentication failure"));
        let e = event("Mar  1 10:05:01 pve1 pvedaemon[1234]: <root@pam> successful auth for user 'admin@pve'");
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("admin@pve"));
        let e = event("Mar  1 10:05:02 pve1 pveproxy[1]: worker 1234 started");
        assert_eq!(e.get_exact("event.category"), None);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("proxmox.tasks"));
    }

    #[test]
    fn fixture_through_text_reader() {
        let data = include_bytes!("../../testdata/syslog/proxmox-tasks.log");
        let mut events = Vec::new();
        for item in TextReader::new(&data[..], SyslogFormat::with_year(2024), Source::file("proxmox-tasks.log")) {
            match item {
                Item::Event(e) => events.push(e),
                Item::Diagnostic(d) => panic!("{d}"),
            }
        }
        assert_eq!(events.len(), 9);
        let deleted: Vec<_> = events
            .iter()
            .filter(|e| {
                text(e, "event.type").as_deref() == Some("deletion")
                    && text(e, "event.outcome").as_deref() == Some("success")
            })
            .filter_map(|e| text(e, "target.name"))
            .collect();
        assert_eq!(deleted, ["101", "102"]);
        let failures = events.iter().filter(|e| text(e, "event.category").as_deref() == Some("authentication")).count();
        assert_eq!(failures, 3);
    }
}
