//! Linux authentication logs (`auth.log`, `secure`) over syslog: `sshd` / `sshd-session`,
//! `sudo`, `su`, `login`, `systemd-logind`, and the account tools (`useradd`, `usermod`,
//! `userdel`, `groupadd`, `groupdel`, `gpasswd`, `passwd`, `chpasswd`).
//!
//! Normalized fields (dataset `linux.auth`):
//!
//! - sshd `Accepted METHOD for USER from IP port N ssh2`: `event.category` `authentication`,
//!   `event.outcome` `success`, `user.name`, `source.ip`, `source.port`, `auth.method`
//!   (`password`, `publickey`, `keyboard-interactive/pam` …); `Failed METHOD for [invalid
//!   user] USER from IP port N`, `Invalid user USER from IP`, `maximum authentication attempts
//!   exceeded for …` and PAM `authentication failure; … rhost=IP user=USER` (from programs
//!   other than sshd, whose own `Failed …` line already counts the attempt): outcome `failure`;
//! - sudo `USER : TTY=… ; PWD=… ; USER=root ; COMMAND=…`: `event.category` `process`,
//!   `user.name`, `user.target.name`, `process.command_line`, `process.working_directory`;
//!   `… incorrect password attempts ; …` and `user NOT in sudoers`: authentication failure;
//! - su `(to root) alice on pts/0` / `FAILED SU (to root) alice on pts/0`: authentication with
//!   `user.name` and `user.target.name`; login `FAILED LOGIN … FOR 'root'`: failure;
//! - account tools: `event.category` `iam` with `event.type` `creation` (`new user`, `new
//!   group`), `deletion` (`delete user`, `delete group`) or `change` (`add 'alice' to group
//!   'sudo'`, `password changed for bob`, `change user 'bob' password` …), `user.target.name`
//!   and `group.name`.

use super::enrich::{authentication, ip, put, put_int, value_after};
use crate::event::Event;

pub(crate) fn is_auth_app(app: &str) -> bool {
    matches!(
        app,
        "sshd"
            | "sshd-session"
            | "sudo"
            | "su"
            | "login"
            | "systemd-logind"
            | "useradd"
            | "usermod"
            | "userdel"
            | "groupadd"
            | "groupdel"
            | "groupmod"
            | "gpasswd"
            | "passwd"
            | "chpasswd"
            | "chage"
    )
}

pub(crate) fn enrich(event: &mut Event, app: &str, message: &str) {
    let message = message.trim();
    match app {
        "sshd" | "sshd-session" => sshd(event, message),
        "sudo" => sudo(event, message),
        "su" => su(event, message),
        "login" => login(event, message),
        "systemd-logind" => {
            // New session 12 of user alice.
            if let Some(rest) = message.strip_prefix("New session ")
                && let Some((_, user)) = rest.split_once(" of user ")
            {
                put(event, "user.name", user.trim_end_matches('.'));
            }
        }
        _ => account_tool(event, message),
    }
    if event.get_exact("event.category").is_none() {
        pam(event, app, message);
    }
}

fn sshd(event: &mut Event, message: &str) {
    // Accepted publickey for deploy from 198.51.100.23 port 40022 ssh2: ED25519 SHA256:…
    for (prefix, outcome) in [("Accepted ", "success"), ("Failed ", "failure")] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((method, rest)) = rest.split_once(" for ")
            && !method.contains(' ')
        {
            let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
            let Some((user, from)) = rest.rsplit_once(" from ") else { return };
            put(event, "auth.method", method);
            user_from(event, user, from);
            authentication(event, outcome);
            return;
        }
    }
    // Invalid user admin from 203.0.113.9 port 51234
    if let Some(rest) = message.strip_prefix("Invalid user ") {
        if let Some((user, from)) = rest.rsplit_once(" from ") {
            user_from(event, user, from);
        }
        authentication(event, "failure");
        return;
    }
    // error: maximum authentication attempts exceeded for invalid user x from IP port N ssh2 [preauth]
    if let Some((_, rest)) = message.split_once("maximum authentication attempts exceeded for ") {
        let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
        if let Some((user, from)) = rest.rsplit_once(" from ") {
            user_from(event, user, from);
        }
        authentication(event, "failure");
    }
}

/// `USER` and `IP port N …` of an sshd line.
fn user_from(event: &mut Event, user: &str, from: &str) {
    if !user.is_empty() {
        put(event, "user.name", user);
    }
    let mut words = from.split(' ');
    if let Some(addr) = words.next().and_then(ip) {
        put(event, "source.ip", addr);
    }
    if words.next() == Some("port")
        && let Some(port) = words.next().and_then(|p| p.parse::<u16>().ok())
    {
        put_int(event, "source.port", i64::from(port));
    }
}

fn sudo(event: &mut Event, message: &str) {
    // alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow
    let Some((user, rest)) = message.split_once(" : ") else { return };
    let user = user.trim();
    if user.is_empty() || user.contains(' ') {
        return;
    }
    put(event, "user.name", user);
    let mut failed = false;
    for part in rest.split(" ; ") {
        let part = part.trim();
        if let Some(cmd) = part.strip_prefix("COMMAND=") {
            put(event, "process.command_line", cmd);
        } else if let Some(pwd) = part.strip_prefix("PWD=") {
            put(event, "process.working_directory", pwd);
        } else if let Some(target) = part.strip_prefix("USER=") {
            put(event, "user.target.name", target);
        } else if part.contains("incorrect password attempt")
            || part.contains("NOT in sudoers")
            || part.contains("NOT allowed")
        {
            failed = true;
        }
    }
    if failed {
        authentication(event, "failure");
    } else if event.get_exact("process.command_line").is_some() {
        put(event, "event.category", "process");
        put(event, "event.type", "start");
        put(event, "event.outcome", "success");
    }
}

fn su(event: &mut Event, message: &str) {
    // (to root) alice on pts/0 — Debian; FAILED SU (to root) alice on pts/0
    let (body, outcome) = match message.strip_prefix("FAILED SU ") {
        Some(rest) => (rest, "failure"),
        None => (message.strip_prefix("Successful su ").unwrap_or(message), "success"),
    };
    if let Some(rest) = body.strip_prefix("(to ")
        && let Some((target, rest)) = rest.split_once(") ")
    {
        let user = rest.split(" on ").next().unwrap_or(rest).trim();
        if !user.is_empty() {
            put(event, "user.name", user);
        }
        put(event, "user.target.name", target);
        authentication(event, outcome);
    }
}

fn login(event: &mut Event, message: &str) {
    // FAILED LOGIN (1) on '/dev/tty1' FOR 'root', Authentication failure
    if message.starts_with("FAILED LOGIN") {
        if let Some((_, rest)) = message.split_once(" FOR '")
            && let Some((user, _)) = rest.split_once('\'')
        {
            put(event, "user.name", user);
        }
        authentication(event, "failure");
    } else if message.starts_with("ROOT LOGIN") {
        put(event, "user.name", "root");
        authentication(event, "success");
    }
}

/// `pam_unix(su:auth): authentication failure; logname= uid=1000 euid=0 tty=pts/0 ruser=alice rhost=  user=root`
fn pam(event: &mut Event, app: &str, message: &str) {
    let Some((_, rest)) = message.split_once("authentication failure;") else {
        return;
    };
    // sshd writes `Failed password …` for the same attempt.
    if app.starts_with("sshd") {
        return;
    }
    if let Some(addr) = value_after(rest, "rhost=", &[' ']).and_then(ip) {
        put(event, "source.ip", addr);
    }
    let user = value_after(rest, "ruser=", &[' ']).filter(|u| !u.is_empty());
    let target = value_after(rest, "user=", &[' ']).filter(|u| !u.is_empty());
    match (user, target) {
        (Some(user), Some(target)) => {
            put(event, "user.name", user);
            if user != target {
                put(event, "user.target.name", target);
            }
        }
        (None, Some(user)) | (Some(user), None) => put(event, "user.name", user),
        (None, None) => {}
    }
    authentication(event, "failure");
}

/// Quoted or `name=` account and group names of the shadow tools.
fn account_tool(event: &mut Event, message: &str) {
    let quoted = |s: &str| -> Vec<String> { s.split('\'').skip(1).step_by(2).map(str::to_owned).collect() };
    let named = |s: &str| value_after(s, "name=", &[',', ' ']).map(str::to_owned);
    let (kind, user, group): (&str, Option<String>, Option<String>) = if message.starts_with("new user:") {
        ("creation", named(message), None)
    } else if message.starts_with("new group:") || message.starts_with("group added to ") {
        ("creation", None, named(message))
    } else if message.starts_with("delete user ") {
        ("deletion", quoted(message).into_iter().next(), None)
    } else if message.starts_with("group '") && message.contains(" removed") || message.starts_with("delete group ") {
        ("deletion", None, quoted(message).into_iter().next())
    } else if message.starts_with("add '") || message.starts_with("delete '") {
        // add 'alice' to group 'sudo' / add 'alice' to shadow group 'sudo' / delete 'bob' from group 'adm'
        let names = quoted(message);
        ("change", names.first().cloned(), names.get(1).cloned())
    } else if let Some((_, user)) = message.split_once("password changed for ") {
        ("change", Some(user.trim().to_owned()), None)
    } else if message.starts_with("change user '")
        || message.starts_with("lock user '")
        || message.starts_with("unlock user '")
    {
        ("change", quoted(message).into_iter().next(), None)
    } else if let Some(rest) = message.strip_prefix("user ")
        && let Some((user, rest)) = rest.split_once(" added by ")
        && let Some((_, group)) = rest.split_once(" to group ")
    {
        // gpasswd: user alice added by root to group sudo
        ("change", Some(user.to_owned()), Some(group.trim().to_owned()))
    } else {
        return;
    };
    put(event, "event.category", "iam");
    put(event, "event.type", kind);
    put(event, "event.outcome", "success");
    if let Some(user) = user.filter(|u| !u.is_empty()) {
        put(event, "user.target.name", user);
    }
    if let Some(group) = group.filter(|g| !g.is_empty()) {
        put(event, "group.name", group);
    }
}

#[cfg(test)]
mod tests {
    use crate::event::{Event, Source};
    use crate::read::syslog::SyslogFormat;
    use crate::read::{EventStub, Item, LineFormat, TextReader};
    use crate::value::Value;

    fn event(line: &str) -> Event {
        let source = Source::file("auth.log");
        match SyslogFormat::with_year(2026).parse_line(line, EventStub { source: &source, line: 1 }) {
            Ok(Some(e)) => e,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn text(e: &Event, name: &str) -> Option<String> {
        e.get_exact(name).and_then(Value::as_text).map(|t| t.into_owned())
    }

    #[test]
    fn sshd_logons() {
        let e =
            event("Nov 28 07:11:15 web01 sshd[812]: Accepted password for alice from 198.51.100.23 port 40022 ssh2");
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("linux.auth"));
        assert_eq!(text(&e, "host.name").as_deref(), Some("web01"));
        assert_eq!(text(&e, "app").as_deref(), Some("sshd"));
        assert_eq!(
            text(&e, "message").as_deref(),
            Some("Accepted password for alice from 198.51.100.23 port 40022 ssh2")
        );
        assert_eq!(text(&e, "event.category").as_deref(), Some("authentication"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("start"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("alice"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("198.51.100.23"));
        assert_eq!(e.get_exact("source.port"), Some(&Value::Int(40022)));
        assert_eq!(text(&e, "auth.method").as_deref(), Some("password"));

        let e = event(
            "Nov 28 07:11:16 web01 sshd[813]: Accepted publickey for deploy from 2001:db8::4 port 50000 ssh2: ED25519 SHA256:Xk3v",
        );
        assert_eq!(text(&e, "auth.method").as_deref(), Some("publickey"));
        assert_eq!(text(&e, "source.ip").as_deref(), Some("2001:db8::4"));

        let e = event(
            "Nov 28 07:11:17 web01 sshd-session[814]: Failed password for invalid user admin from 203.0.113.9 port 51234 ssh2",
        );
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("admin"));
        let e = event("Nov 28 07:11:18 web01 sshd[815]: Failed none for root from 203.0.113.9 port 51235 ssh2");
        assert_eq!(text(&e, "auth.method").as_deref(), Some("none"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("root"));
        let e = event("Nov 28 07:11:19 web01 sshd[816]: Invalid user oracle from 203.0.113.9 port 51236");
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("oracle"));
        assert_eq!(e.get_exact("source.port"), Some(&Value::Int(51236)));
        let e = event(
            "Nov 28 07:11:20 web01 sshd[817]: error: maximum authentication attempts exceeded for root from 203.0.113.9 port 51237 ssh2 [preauth]",
        );
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        // ESXi's sshd wording.
        let e = event(
            "Nov 28 07:11:21 esx01 sshd[818]: Accepted keyboard-interactive/pam for root from 10.0.0.5 port 52341 ssh2",
        );
        assert_eq!(text(&e, "auth.method").as_deref(), Some("keyboard-interactive/pam"));
        // PAM lines from sshd are not counted twice; other sshd lines get the dataset only.
        let e = event(
            "Nov 28 07:11:22 web01 sshd[819]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.9  user=root",
        );
        assert_eq!(e.get_exact("event.category"), None);
        let e = event("Nov 28 07:11:23 web01 sshd[820]: Connection closed by 192.0.2.7 port 22 [preauth]");
        assert_eq!(e.get_exact("event.category"), None);
        assert_eq!(text(&e, "event.dataset").as_deref(), Some("linux.auth"));
    }

    #[test]
    fn sudo_su_and_login() {
        let e = event(
            "Nov 28 07:12:01 web01 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow",
        );
        assert_eq!(text(&e, "event.category").as_deref(), Some("process"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("alice"));
        assert_eq!(text(&e, "user.target.name").as_deref(), Some("root"));
        assert_eq!(text(&e, "process.command_line").as_deref(), Some("/usr/bin/cat /etc/shadow"));
        assert_eq!(text(&e, "process.working_directory").as_deref(), Some("/home/alice"));
        let e = event(
            "Nov 28 07:12:02 web01 sudo:      bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/bash",
        );
        assert_eq!(text(&e, "event.category").as_deref(), Some("authentication"));
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("bob"));
        let e = event(
            "Nov 28 07:12:03 web01 sudo: pam_unix(sudo:auth): authentication failure; logname=bob uid=1001 euid=0 tty=/dev/pts/1 ruser=bob rhost=  user=bob",
        );
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("bob"));
        assert_eq!(e.get_exact("user.target.name"), None);
        assert_eq!(e.get_exact("source.ip"), None);
        let e = event("Nov 28 07:12:04 web01 su[900]: (to root) alice on pts/0");
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("success"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("alice"));
        assert_eq!(text(&e, "user.target.name").as_deref(), Some("root"));
        let e = event("Nov 28 07:12:05 web01 su[901]: FAILED SU (to root) mallory on pts/2");
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("mallory"));
        let e = event(
            "Nov 28 07:12:06 web01 login[902]: FAILED LOGIN (1) on '/dev/tty1' FOR 'root', Authentication failure",
        );
        assert_eq!(text(&e, "event.outcome").as_deref(), Some("failure"));
        assert_eq!(text(&e, "user.name").as_deref(), Some("root"));
        let e = event("Nov 28 07:12:07 web01 systemd-logind[600]: New session 12 of user alice.");
        assert_eq!(text(&e, "user.name").as_deref(), Some("alice"));
        assert_eq!(e.get_exact("event.category"), None);
    }

    #[test]
    fn account_changes() {
        let e = event(
            "Nov 28 07:13:00 web01 useradd[1000]: new user: name=backdoor, UID=0, GID=0, home=/root, shell=/bin/bash, from=/dev/pts/0",
        );
        assert_eq!(text(&e, "event.category").as_deref(), Some("iam"));
        assert_eq!(text(&e, "event.type").as_deref(), Some("creation"));
        assert_eq!(text(&e, "user.target.name").as_deref(), Some("backdoor"));
        let e = event("Nov 28 07:13:01 web01 usermod[1001]: add 'alice' to group 'sudo'");
        assert_eq!(text(&e, "event.type").as_deref(), Some("change"));
        assert_eq!(text(&e, "user.target.name").as_deref(), Some("alice"));
        assert_eq!(text(&e, "group.name").as_deref(), Some("sudo"));
        let e = event("Nov 28 07:13:02 web01 usermod[1001]: add 'alice' to shadow group 'sudo'");
        assert_eq!(text(&e, "group.name").as_deref(), Some("sudo"));
        let e = event("Nov 28 07:13:03 web01 groupadd[1002]: group added to /etc/group: name=devs, GID=1002");
        assert_eq!(text(&e, "event.type").as_deref(), Some("creation"));
        assert_eq!(text(&e, "group.name").as_deref(), Some("devs"));
        let e = event("Nov 28 07:13:04 web01 userdel[1003]: delete user 'bob'");
        assert_eq!(text(&e, "event.type").as_deref(), Some("deletion"));
        assert_eq!(text(&e, "user.target.name").as_deref(), Some("bob"));
        let e = event("Nov 28 07:13:05 web01 passwd[1004]: pam_unix(passwd:chauthtok): password changed for carol");
        assert_eq!(text(&e, "event.type").as_deref(), Some("change"));
        assert_eq!(text(&e, "user.target.name").as_deref(), Some("carol"));
        let e = event("Nov 28 07:13:06 web01 gpasswd[1005]: user dave added by root to group wheel");
        assert_eq!(text(&e, "user.target.name").as_deref(), Some("dave"));
        assert_eq!(text(&e, "group.name").as_deref(), Some("wheel"));
        let e = event("Nov 28 07:13:07 web01 useradd[1006]: failed adding user 'x', exit code: 9");
        assert_eq!(e.get_exact("event.category"), None);
        // Not an auth program.
        let e = event("Nov 28 07:13:08 web01 cron[1]: Accepted password for alice from 198.51.100.23 port 1 ssh2");
        assert_eq!(e.get_exact("event.dataset"), None);
        assert_eq!(e.get_exact("user.name"), None);
    }

    #[test]
    fn fixture_through_text_reader() {
        let data = include_bytes!("../../testdata/syslog/linux-auth.log");
        let mut events = Vec::new();
        for item in TextReader::new(&data[..], SyslogFormat::with_year(2026), Source::file("linux-auth.log")) {
            match item {
                Item::Event(e) => events.push(e),
                Item::Diagnostic(d) => panic!("{d}"),
            }
        }
        assert_eq!(events.len(), 10);
        let count =
            |field: &str, value: &str| events.iter().filter(|e| text(e, field).as_deref() == Some(value)).count();
        assert_eq!(count("event.dataset", "linux.auth"), 10);
        assert_eq!(count("event.outcome", "failure"), 4);
        assert_eq!(count("event.category", "iam"), 2);
        assert_eq!(count("event.category", "process"), 1);
    }
}
