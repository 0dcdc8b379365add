//! VMware vSphere over syslog: vCenter's `vpxd` event stream and ESXi's `hostd` / `vpxa` /
//! `shell` lines.
//!
//! vCenter streams its events to a remote syslog server in this shape (the vSphere
//! monitoring guide's "Streaming Events to a Remote Syslog Server"):
//!
//! ```text
//! Event [eventId] [partInfo] [createdTime] [eventType] [severity] [user] [target] [chainId] [desc]
//! Event [3481177] [1-1] [2019-05-23T09:03:36.213922Z] [vim.event.UserLoginSessionEvent] [info] [VSPHERE.LOCAL\svc] [] [3481177] [User VSPHERE.LOCAL\svc@192.168.10.10 logged in as pyvmomi Python/2.7.13]
//! ```
//!
//! Fields: `vcenter.event_id`, `vcenter.part`, `vcenter.created`, `vcenter.event_type`,
//! `vcenter.severity`, `vcenter.user`, `vcenter.target`, `vcenter.chain_id`,
//! `vcenter.description`; the event's own time (`createdTime`) becomes the timestamp. vpxd's
//! own log lines with `[VpxLRO] -- BEGIN task-1 -- vm-42 -- vim.VirtualMachine.destroy --`
//! give `vcenter.task`, `vcenter.moref` and `vcenter.method`.
//!
//! ESXi lines (`Hostd: info hostd[2099574] [Originator@6876 sub=Vimsvc.ha-eventmgr
//! opID=… user=root] Event 123 : Removed vm01 on esx01 from ha-datacenter`): the `key=value`
//! pairs of the bracketed prefixes become `esxi.<key>` (`esxi.sub`, `esxi.opID`,
//! `esxi.user`), the text after them `esxi.body`; `Event N : …` gives `esxi.event_id` and
//! `esxi.description`; `Task Created : haTask-4-vim.VirtualMachine.destroy-1234` gives
//! `esxi.task` and `esxi.method`. ESXi's `shell` lines (`[root]: rm -rf /vmfs/…`) give the
//! command.
//!
//! Normalized: `event.action` is the vCenter event type without its `vim.event.` prefix
//! (`VmRemovedEvent`, `UserLoginSessionEvent`, `com.vmware.sso.LoginFailure`), the same name
//! for the matching ESXi event descriptions, or the API method (`vim.VirtualMachine.destroy`);
//! VM events get `event.category` `vm`, `event.type` (`deletion`, `creation`, `start`,
//! `stop`, `change`), `cloud.provider` `vsphere`, `target.name` (the VM's name, or its
//! managed object id when only that is known) and `target.type` `vm`; log-ons get
//! `event.category` `authentication` with `user.name`, `source.ip`, `user_agent.original` and
//! the outcome; `user.name` is the acting user everywhere it is known.

use jiff::Timestamp;

use super::enrich::{authentication, ip, put, vm_event};
use crate::event::Event;
use crate::value::Value;

pub(crate) fn is_vcenter_app(app: &str) -> bool {
    matches!(app, "vpxd" | "vpxd-svcs" | "vpxd-main")
}

pub(crate) fn is_esxi_app(app: &str) -> bool {
    matches!(app, "Hostd" | "hostd" | "Vpxa" | "vpxa" | "shell" | "hostd-probe")
}

const PROVIDER: &str = "vsphere";

// ---------------------------------------------------------------------------------------------
// vCenter

pub(crate) fn enrich_vcenter(event: &mut Event, message: &str) {
    let message = message.trim_start();
    if let Some(body) = message.strip_prefix("Event ") {
        if let Some(fields) = event_fields(body) {
            add_vcenter_event(event, &fields);
        }
        return;
    }
    // vpxd's own log: `… [VpxLRO] -- BEGIN task-3035 -- vm-1021 -- vim.VirtualMachine.destroy -- …`
    if let Some((_, lro)) = message.split_once("[VpxLRO] -- BEGIN ") {
        let parts: Vec<&str> = lro.split(" -- ").map(str::trim).collect();
        if let [task, moref, method, ..] = parts[..] {
            put(event, "vcenter.task", task);
            if !moref.is_empty() {
                put(event, "vcenter.moref", moref);
            }
            put(event, "vcenter.method", method);
            put(event, "event.action", method);
            if let Some(kind) = method_kind(method) {
                vm_event(event, kind, PROVIDER, Some(moref));
            }
        }
    }
}

/// The nine bracketed fields of a streamed event (the description runs to the last `]`).
fn event_fields(s: &str) -> Option<[&str; 9]> {
    let mut fields = [""; 9];
    let mut rest = s.trim_start();
    for field in fields.iter_mut().take(8) {
        let body = rest.strip_prefix('[')?;
        let end = body.find(']')?;
        *field = &body[..end];
        rest = body[end + 1..].trim_start_matches(' ');
    }
    let desc = rest.strip_prefix('[')?;
    fields[8] = desc.strip_suffix(']').unwrap_or(desc);
    Some(fields)
}

fn add_vcenter_event(event: &mut Event, f: &[&str; 9]) {
    let [id, part, created, kind, severity, user, target, chain, desc] = *f;
    for (name, value) in [
        ("vcenter.event_id", id),
        ("vcenter.part", part),
        ("vcenter.created", created),
        ("vcenter.event_type", kind),
        ("vcenter.severity", severity),
        ("vcenter.user", user),
        ("vcenter.target", target),
        ("vcenter.chain_id", chain),
        ("vcenter.description", desc),
    ] {
        if !value.is_empty() {
            put(event, name, value);
        }
    }
    if let Ok(ts) = created.parse::<Timestamp>() {
        event.timestamp = Some(ts);
    }
    let action = kind.strip_prefix("vim.event.").unwrap_or(kind);
    if !action.is_empty() {
        put(event, "event.action", action);
    }
    if !user.is_empty() {
        put(event, "user.name", user);
    }
    let target = Some(target).filter(|t| !t.is_empty());
    classify(event, action, desc, target);
    // Task events: `Task: Delete virtual machine`, and any description naming `Destroy_Task`.
    if action == "TaskEvent" || desc.contains("Destroy_Task") {
        let task = desc.strip_prefix("Task: ").unwrap_or(desc);
        if let Some(kind) = task_kind(task) {
            vm_event(event, kind, PROVIDER, target);
        }
    }
}

/// Adds the normalized fields of a vCenter / ESXi event given its type name and description.
fn classify(event: &mut Event, action: &str, desc: &str, target: Option<&str>) {
    let vm_kind = match action {
        "VmRemovedEvent" => Some("deletion"),
        "VmCreatedEvent" | "VmClonedEvent" | "VmDeployedEvent" | "VmRegisteredEvent" => Some("creation"),
        "VmPoweredOnEvent" | "VmStartingEvent" => Some("start"),
        "VmPoweredOffEvent" | "VmSuspendedEvent" | "VmGuestShutdownEvent" => Some("stop"),
        "VmReconfiguredEvent" | "VmRenamedEvent" | "VmRelocatedEvent" | "VmMigratedEvent" => Some("change"),
        _ => None,
    };
    if let Some(kind) = vm_kind {
        let name = vm_name(action, desc).or(target);
        vm_event(event, kind, PROVIDER, name);
        return;
    }
    match action {
        "UserLoginSessionEvent" => {
            // User VSPHERE.LOCAL\svc@192.168.10.10 logged in as pyvmomi Python/2.7.13
            if let Some(rest) = desc.strip_prefix("User ")
                && let Some((who, agent)) = rest.split_once(" logged in")
            {
                add_user_at_ip(event, who);
                if let Some(agent) = agent.strip_prefix(" as ").filter(|a| !a.is_empty()) {
                    put(event, "user_agent.original", agent);
                }
            }
            authentication(event, "success");
        }
        "BadUsernameSessionEvent" => {
            // Cannot login user@192.0.2.1
            if let Some(who) = desc.strip_prefix("Cannot login ") {
                add_user_at_ip(event, who.trim());
            }
            authentication(event, "failure");
        }
        "com.vmware.sso.LoginFailure" => authentication(event, "failure"),
        "com.vmware.sso.LoginSuccess" => authentication(event, "success"),
        "esx.audit.ssh.enabled" | "esx.audit.shell.enabled" | "esx.audit.ssh.disabled" | "esx.audit.shell.disabled" => {
            put(event, "event.category", "configuration");
            put(event, "event.type", "change");
        }
        _ => {}
    }
}

/// `user@192.0.2.1` (the user may be `DOMAIN\user` or `user@vsphere.local`): the last `@`
/// separates the address.
fn add_user_at_ip(event: &mut Event, s: &str) {
    match s.rsplit_once('@') {
        Some((user, addr)) if ip(addr).is_some() => {
            if !user.is_empty() {
                put(event, "user.name", user);
            }
            if let Some(addr) = ip(addr) {
                put(event, "source.ip", addr);
            }
        }
        _ if !s.is_empty() => put(event, "user.name", s),
        _ => {}
    }
}

/// The VM's name in the description vCenter and ESXi write for a VM event.
fn vm_name<'a>(action: &str, desc: &'a str) -> Option<&'a str> {
    let name = match action {
        // Removed vm01 on esx01.example.gov from Datacenter
        "VmRemovedEvent" => desc.strip_prefix("Removed ")?.split(" on ").next()?,
        // Created virtual machine vm01 on esx01 in Datacenter
        "VmCreatedEvent" => desc.strip_prefix("Created virtual machine ")?.split(" on ").next()?,
        // Reconfigured vm01 on esx01 in Datacenter.
        "VmReconfiguredEvent" => desc.strip_prefix("Reconfigured ")?.split(" on ").next()?,
        // vm01 on esx01 in Datacenter is powered off
        _ => desc.split(" on ").next()?,
    };
    Some(name.trim()).filter(|n| !n.is_empty() && n.len() < desc.len())
}

/// `event.type` of a vCenter task description (`Delete virtual machine`).
fn task_kind(task: &str) -> Option<&'static str> {
    let t = task.to_ascii_lowercase();
    if t.contains("destroy_task") || t.starts_with("delete virtual machine") || t.starts_with("remove virtual machine")
    {
        Some("deletion")
    } else if t.starts_with("create virtual machine")
        || t.starts_with("clone virtual machine")
        || t.starts_with("deploy ovf")
    {
        Some("creation")
    } else if t.starts_with("power on virtual machine") {
        Some("start")
    } else if t.starts_with("power off virtual machine") || t.starts_with("initiate guest os shutdown") {
        Some("stop")
    } else if t.starts_with("reconfigure virtual machine") {
        Some("change")
    } else {
        None
    }
}

/// `event.type` of a vSphere API method on a VM.
fn method_kind(method: &str) -> Option<&'static str> {
    let m = method.rsplit('.').next().unwrap_or(method);
    Some(match m {
        "destroy" | "Destroy_Task" | "unregister" | "UnregisterVM" => "deletion",
        "createVm" | "CreateVM_Task" | "clone" | "CloneVM_Task" | "registerVm" | "RegisterVM_Task" => "creation",
        "powerOn" | "PowerOnVM_Task" => "start",
        "powerOff" | "PowerOffVM_Task" | "shutdownGuest" | "ShutdownGuest" | "suspend" => "stop",
        "reconfigure" | "ReconfigVM_Task" => "change",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// ESXi

pub(crate) fn enrich_esxi(event: &mut Event, message: &str) {
    let app = event.get_exact("app").and_then(Value::as_text).map(|a| a.into_owned()).unwrap_or_default();
    if app == "shell" {
        // [root]: rm -rf /vmfs/volumes/datastore1/vm01
        if let Some(rest) = message.trim_start().strip_prefix('[')
            && let Some((who, command)) = rest.split_once("]: ")
        {
            put(event, "user.name", who);
            put(event, "process.command_line", command);
            put(event, "event.category", "process");
            put(event, "event.type", "start");
        }
        return;
    }
    let (pairs, body) = esxi_prefix(message);
    for (k, v) in &pairs {
        put(event, &format!("esxi.{k}"), *v);
    }
    // ESXi 8 sends the Originator data as RFC 5424 structured data.
    let sd_user = event
        .fields()
        .iter()
        .find(|f| f.name.starts_with("sd.Originator@") && f.name.ends_with(".user"))
        .and_then(|f| f.value.as_text())
        .map(|u| u.into_owned());
    let user = pairs.iter().find(|(k, _)| *k == "user").map(|(_, v)| v.to_string()).or(sd_user);
    if !body.is_empty() {
        put(event, "esxi.body", body);
    }

    if let Some(user) = &user {
        put(event, "user.name", user.as_str());
    }
    if let Some(rest) = body.strip_prefix("Event ")
        && let Some((id, desc)) = rest.split_once(" : ")
        && id.bytes().all(|b| b.is_ascii_digit())
    {
        put(event, "esxi.event_id", id);
        put(event, "esxi.description", desc);
        if let Some(action) = hostd_event_type(desc) {
            put(event, "event.action", action);
            classify(event, action, desc, None);
        }
        return;
    }
    // Task Created : haTask-4-vim.VirtualMachine.destroy-123456
    if let Some(rest) = body.strip_prefix("Task Created : ").or_else(|| body.strip_prefix("Task Completed : ")) {
        let task = rest.split(' ').next().unwrap_or(rest);
        put(event, "esxi.task", task);
        if let Some(method_at) = task.find("vim.") {
            let method = task[method_at..].rsplit_once('-').map_or(&task[method_at..], |(m, _)| m);
            let vm = task.strip_prefix("haTask-").and_then(|t| t.split_once("-vim.")).map(|(vm, _)| vm);
            put(event, "esxi.method", method);
            put(event, "event.action", method);
            if method.starts_with("vim.VirtualMachine.")
                && let Some(kind) = method_kind(method)
            {
                vm_event(event, kind, PROVIDER, vm.filter(|v| *v != "ha"));
            }
            if let Some(status) = rest.split_once(" Status ").map(|(_, s)| s.trim()) {
                put(event, "event.outcome", if status == "success" { "success" } else { "failure" });
            }
        }
        return;
    }
    if body.contains("Destroy_Task") {
        put(event, "event.action", "Destroy_Task");
        vm_event(event, "deletion", PROVIDER, None);
        return;
    }
    // Accepted password for user root from 192.0.2.5 / Rejected password for user root from …
    for (prefix, outcome) in [("Accepted password for user ", "success"), ("Rejected password for user ", "failure")] {
        if let Some(rest) = body.strip_prefix(prefix) {
            let (who, from) = rest.split_once(" from ").unwrap_or((rest, ""));
            put(event, "user.name", who.trim());
            if let Some(addr) = ip(from.split(' ').next().unwrap_or("")) {
                put(event, "source.ip", addr);
            }
            authentication(event, outcome);
            return;
        }
    }
    if let Some(action) = ssh_shell_toggle(body) {
        put(event, "event.action", action);
        classify(event, action, body, None);
    }
}

/// `[Originator@6876 sub=Vimsvc.ha-eventmgr opID=x user=root]`-style prefixes (after an
/// optional level word and `hostd[pid]`), as key/value pairs, and the text after them.
/// ESXi 6's `[6F8C1B70 info 'Vimsvc.ha-eventmgr' opID=x]` reads the same way.
fn esxi_prefix(message: &str) -> (Vec<(&str, &str)>, &str) {
    let mut rest = message.trim_start();
    const LEVELS: [&str; 12] = [
        "info", "verbose", "warning", "error", "debug", "trivia", "In(166)", "Wa(164)", "Er(163)", "Db(167)",
        "No(165)", "Cr(162)",
    ];
    if let Some((word, after)) = rest.split_once(' ')
        && LEVELS.contains(&word)
    {
        rest = after.trim_start();
    }
    // hostd[2099574]
    if let Some((word, after)) = rest.split_once(' ')
        && let Some((name, pid)) = word.strip_suffix(']').and_then(|w| w.split_once('['))
        && !name.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
    {
        rest = after.trim_start();
    }
    let mut pairs = Vec::new();
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else { break };
        for word in inner[..end].split(' ') {
            if let Some((k, v)) = word.split_once('=')
                && !k.is_empty()
            {
                pairs.push((k, v));
            }
        }
        rest = inner[end + 1..].trim_start();
    }
    (pairs, rest)
}

/// The vCenter event type that matches an ESXi hostd event description.
fn hostd_event_type(desc: &str) -> Option<&'static str> {
    Some(if desc.starts_with("Removed ") && desc.contains(" from ") {
        "VmRemovedEvent"
    } else if desc.starts_with("Created virtual machine ") {
        "VmCreatedEvent"
    } else if desc.starts_with("Reconfigured ") {
        "VmReconfiguredEvent"
    } else if desc.ends_with(" is powered off") {
        "VmPoweredOffEvent"
    } else if desc.ends_with(" is powered on") {
        "VmPoweredOnEvent"
    } else if desc.starts_with("User ") && desc.contains(" logged in") {
        "UserLoginSessionEvent"
    } else if desc.starts_with("User ") && desc.contains(" logged out") {
        "UserLogoutSessionEvent"
    } else if desc.starts_with("Cannot login ") {
        "BadUsernameSessionEvent"
    } else {
        return ssh_shell_toggle(desc);
    })
}

/// ESXi's audit events for SSH and the shell being switched on or off.
fn ssh_shell_toggle(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    let ssh = t.starts_with("ssh access has been") || t.starts_with("ssh login has been");
    let shell = t.starts_with("esxi shell has been") || t.starts_with("the esxi shell has been");
    match (ssh, shell, t.contains("enabled"), t.contains("disabled")) {
        (true, _, true, _) => Some("esx.audit.ssh.enabled"),
        (true, _, _, true) => Some("esx.audit.ssh.disabled"),
        (_, true, true, _) => Some("esx.audit.shell.enabled"),
        (_, true, _, true) => Some("esx.audit.shell.disabled"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::event::{Event, Source};
    use crate::read::syslog::SyslogFormat;
    use crate::read::{EventStub, Item, LineFormat, TextReader};
    use crate::value::Value;

    fn event(line: &str) -> Event {
        let source = Source::file("vsphere.log");
        match SyslogFormat::with_year(2024).parse_line(line, EventStub { source: &source, line: 1 }) {
            Ok(Some(e)) => e,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn text(e: &Event, name: &str) -> Option<String> {
        e.get_exact(name).and_then(Value::as_text).map(|t| t.into_owned())
    }

    #[test]
    fn vcenter_vm_removed() {
        let e = event(
            r"<14>1 2024-03-01T10:00:00.500Z vcsa.example.gov vpxd 4035 - -  Event [12345] [1-1] [2024-03-01T10:00:00.000Z] [vim.event.VmRemovedEvent] [info] [VSPHERE.LOCAL\Administrator] [Datacenter] [12340] [Removed vm-web01 on esx01.example.gov from Datacenter]",
        );
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("vmware.vcenter"));
        assert_eq!(text(&e, "host.name").as_deref(), Some("vcsa.example.gov"));
        assert_eq!(e.timestamp, "2024-03-01T10:00:00Z".parse().ok());
        assert_eq!(text(&e, "vcenter.event_id").as_deref(), Some("12345"));
        assert_eq!(text(&e, "vcenter.part").as_deref(), Some("1-1"));
        assert_eq!(text(&e, "vcenter.event_type").as_deref(), Some("vim.event.VmRemovedEvent"));
        assert_eq!(text(&e, "vcenter.severity").as_deref(), Some("info"));
        assert_eq!(text(&e, "vcenter.target").as_deref(), Some("Datacenter"));
        assert_eq!(text(&e, "vcenter.chain_id").as_deref(), Some("12340"));
        assert_eq!(
            text(&e, "vcenter.description").as_deref(),
            Some("Removed vm-web01 on esx01.example.gov from Datacenter")
        );
        assert_eq!(text(&e, "event.action").as_deref(), Some("VmRemovedEvent"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("vm"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "cloud.provider").as_deref(), Some("vsphere"));
        assert_eq!(text(&e, "user.name").as_deref(), Some(r"VSPHERE.LOCAL\Administrator"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("vm-web01"));
        assert_eq!(text(&e, "target.type").as_deref(), Some("vm"));
    }

    #[test]
    fn vcenter_logins_and_power() {
        let e = event(
            r"<14>1 2019-05-23T09:03:36.300Z vcsa vpxd 123 - - Event [3481177] [1-1] [2019-05-23T09:03:36.213922Z] [vim.event.UserLoginSessionEvent] [info] [VSPHERE.LOCAL\svc-vcenter-user] [] [3481177] [User VSPHERE.LOCAL\svc-vcenter-user@192.168.10.10 logged in as pyvmomi Python/2.7.13 (Linux; 4.9.0-7-amd64; x86_64)]",
        );
        assert_eq!(text(&e, "event.category").as_deref(), Some("authentication"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("192.168.10.10"));
        assert_eq!(text(&e, "user.name").as_deref(), Some(r"VSPHERE.LOCAL\svc-vcenter-user"));
        assert_eq!(
            text(&e, "user_agent.original").as_deref(),
            Some("pyvmomi Python/2.7.13 (Linux; 4.9.0-7-amd64; x86_64)")
        );
        assert_eq!(e.get_exact("vcenter.target"), None);

        let e = event(
            "<14>1 2024-03-01T10:00:00Z vcsa vpxd 123 - - Event [9] [1-1] [2024-03-01T10:00:00Z] [vim.event.BadUsernameSessionEvent] [warning] [] [] [9] [Cannot login attacker@vsphere.local@203.0.113.9]",
        );
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("attacker@vsphere.local"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("203.0.113.9"));

        let e = event(
            "<14>1 2024-03-01T10:00:00Z vcsa vpxd 123 - - Event [10] [1-1] [2024-03-01T10:00:00Z] [vim.event.VmPoweredOffEvent] [info] [root] [db01] [10] [db01 on esx02 in Datacenter is powered off]",
        );
        assert_eq!(text(&e, "event.type").as_deref(), Some("stop"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("db01"));
        let e = event(
            "<14>1 2024-03-01T10:00:00Z vcsa vpxd 123 - - Event [11] [1-1] [2024-03-01T10:00:00Z] [vim.event.VmCreatedEvent] [info] [root] [] [11] [Created virtual machine new01 on esx02 in Datacenter]",
        );
        assert_eq!(text(&e, "event.type").as_deref(), Some("creation"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("new01"));
    }

    #[test]
    fn vcenter_tasks() {
        let e = event(
            r"<14>1 2024-03-01T10:00:00Z vcsa vpxd 123 - - Event [12] [1-1] [2024-03-01T10:00:00Z] [vim.event.TaskEvent] [info] [EXAMPLE\ops] [vm-web02] [12] [Task: Delete virtual machine]",
        );
        assert_eq!(text(&e, "event.action").as_deref(), Some("TaskEvent"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("vm-web02"));
        assert_eq!(text(&e, "user.name").as_deref(), Some(r"EXAMPLE\ops"));
        let e = event(
            "2024-03-01T10:00:00.000Z vcsa vpxd[4313]: info vpxd[04313] [Originator@6876 sub=vpxLro opID=abc] [VpxLRO] -- BEGIN task-3035 -- vm-1021 -- vim.VirtualMachine.destroy -- 52a8f(52d1)",
        );
        assert_eq!(text(&e, "event.action").as_deref(), Some("vim.VirtualMachine.destroy"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("vm-1021"));
        // Unrelated events: action only.
        let e = event(
            "<14>1 2024-03-01T10:00:00Z vcsa vpxd 123 - - Event [13] [1-1] [2024-03-01T10:00:00Z] [vim.event.AlarmStatusChangedEvent] [info] [] [] [13] [Alarm changed]",
        );
        assert_eq!(text(&e, "event.action").as_deref(), Some("AlarmStatusChangedEvent"));
        assert_eq!(e.get_exact("event.category"), None);
        // Not an event line, not truncated: nothing but the dataset.
        let e = event("<14>1 2024-03-01T10:00:00Z vcsa vpxd 123 - - Event [13] [1-2]");
        assert_eq!(e.get_exact("event.action"), None);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("vmware.vcenter"));
    }

    #[test]
    fn esxi_hostd_lines() {
        let e = event(
            "2024-03-01T10:00:00.123Z esx01.example.gov Hostd[2099574]: info hostd[2099574] [Originator@6876 sub=Vimsvc.ha-eventmgr opID=esxui-1a2b user=root] Event 123 : Removed vm01 on esx01.example.gov from ha-datacenter",
        );
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("vmware.esxi"));
        assert_eq!(text(&e, "host.name").as_deref(), Some("esx01.example.gov"));
        assert_eq!(text(&e, "esxi.sub").as_deref(), Some("Vimsvc.ha-eventmgr"));
        assert_eq!(text(&e, "esxi.user").as_deref(), Some("root"));
        assert_eq!(text(&e, "esxi.event_id").as_deref(), Some("123"));
        assert_eq!(text(&e, "event.action").as_deref(), Some("VmRemovedEvent"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("vm01"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("root"));
        assert_eq!(text(&e, "cloud.provider").as_deref(), Some("vsphere"));

        // Without a prefix (older syslog forwarding).
        let e = event(
            "2024-03-01T10:00:00.123Z esx01 Hostd: Event 124 : User root@10.0.0.5 logged in as VMware-client/6.5.0",
        );
        assert_eq!(text(&e, "event.action").as_deref(), Some("UserLoginSessionEvent"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("10.0.0.5"));
        assert_eq!(text(&e, "user_agent.original").as_deref(), Some("VMware-client/6.5.0"));

        // ESXi 8: RFC 5424 with the Originator as structured data.
        let e = event(
            r#"<166>1 2024-03-01T10:00:00.123Z esx01 Hostd 2099574 - [Originator@6876 sub="Vimsvc.TaskManager" opID="x" user="vpxuser:EXAMPLE\\ops"] Task Created : haTask-4-vim.VirtualMachine.destroy-123456"#,
        );
        assert_eq!(text(&e, "event.action").as_deref(), Some("vim.VirtualMachine.destroy"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "target.name").as_deref(), Some("4"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("vpxuser:EXAMPLE\\ops"));

        let e = event(
            "2024-03-01T10:00:01.000Z esx01 Hostd: info hostd[1] [Originator@6876 sub=Vimsvc.TaskManager] Task Completed : haTask-4-vim.VirtualMachine.powerOff-99 Status success",
        );
        assert_eq!(text(&e, "event.type").as_deref(), Some("stop"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));

        let e = event(
            "2024-03-01T10:00:02.000Z esx01 Hostd: info hostd[1] [Originator@6876 sub=Default] Accepted password for user root from 10.0.0.5",
        );
        assert_eq!(text(&e, "event.category").as_deref(), Some("authentication"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("root"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("10.0.0.5"));
        let e = event("2024-03-01T10:00:03.000Z esx01 Hostd: Rejected password for user root from 203.0.113.9");
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));

        let e = event("2024-03-01T10:00:04.000Z esx01 Hostd: Event 130 : SSH access has been enabled");
        assert_eq!(text(&e, "event.action").as_deref(), Some("esx.audit.ssh.enabled"));
        assert_eq!(text(&e, "event.category").as_deref(), Some("configuration"));
        let e = event("2024-03-01T10:00:04.000Z esx01 Hostd: SSH login has been enabled");
        assert_eq!(text(&e, "event.action").as_deref(), Some("esx.audit.ssh.enabled"));

        let e = event("2024-03-01T10:00:05.000Z esx01 Vpxa: [VpxaHalVmHostagent] 12: Destroy_Task requested for vm01");
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "cloud.provider").as_deref(), Some("vsphere"));

        let e = event("2024-03-01T10:00:06.000Z esx01 shell[2101234]: [root]: rm -rf /vmfs/volumes/datastore1/vm01");
        assert_eq!(text(&e, "user.name").as_deref(), Some("root"));
        assert_eq!(text(&e, "process.command_line").as_deref(), Some("rm -rf /vmfs/volumes/datastore1/vm01"));

        // Unrecognised hostd lines: only the dataset and what the prefix gave.
        let e = event("2024-03-01T10:00:07.000Z esx01 Hostd: info hostd[1] [Originator@6876 sub=Libs] Nothing to see");
        assert_eq!(e.get_exact("event.category"), None);
        assert_eq!(text(&e, "esxi.body").as_deref(), Some("Nothing to see"));
    }

    #[test]
    fn fixtures_through_text_reader() {
        for (name, data, events, deletions, dataset) in [
            ("vcenter-vpxd.log", &include_bytes!("../../testdata/syslog/vcenter-vpxd.log")[..], 6, 3, "vmware.vcenter"),
            ("esxi-hostd.log", &include_bytes!("../../testdata/syslog/esxi-hostd.log")[..], 7, 3, "vmware.esxi"),
        ] {
            let mut got = Vec::new();
            for item in TextReader::new(data, SyslogFormat::with_year(2024), Source::file(name)) {
                match item {
                    Item::Event(e) => got.push(e),
                    Item::Diagnostic(d) => panic!("{d}"),
                }
            }
            assert_eq!(got.len(), events, "{name}");
            assert!(got.iter().all(|e| text(e, "event.dataset").as_deref() == Some(dataset)), "{name}");
            let n = got.iter().filter(|e| text(e, "event.type").as_deref() == Some("deletion")).count();
            assert_eq!(n, deletions, "{name}");
        }
    }
}
