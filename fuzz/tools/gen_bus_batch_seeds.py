#!/usr/bin/env python3
"""Writes the bus_batch fuzz seeds: event bus messages in the layout of
crates/nigehban-server/src/monitor/batch.rs (NGB1, batch key, organisation, event count, then per
event TLP, time, source, dataset, host and record). Everything here is made up.

    python3 tools/gen_bus_batch_seeds.py seeds/bus_batch
"""
import os, struct, sys

KEY = bytes.fromhex("0192d5a8c0de7a11b0a5c0ffee000001")
ORG = bytes.fromhex("0192d5a8c0de7a11b0a5c0ffee0000a1")


def text(b):
    return struct.pack("<I", len(b)) + b


def opt(b):
    return b"\0" if b is None else b"\1" + text(b)


def event(tlp, ts, source, dataset, host, record):
    time = b"\0" + struct.pack("<q", 0) if ts is None else b"\1" + struct.pack("<q", ts)
    return text(tlp) + time + text(source) + opt(dataset) + opt(host) + text(record)


def message(events, count=None):
    n = len(events) if count is None else count
    return b"NGB1" + KEY + ORG + struct.pack("<I", n) + b"".join(events)


RECORD = b'{"EventID":4625,"Channel":"Security","TargetUserName":"admin","IpAddress":"192.0.2.7"}'
SYSLOG = b"<38>Nov 28 10:00:00 web1 sshd[812]: Failed password for root from 198.51.100.9 port 52111 ssh2"
seeds = {
    "empty.bin": message([]),
    "one_event.bin": message([event(b"AMBER+STRICT", 1764324000000000, b"syslog-tcp 192.0.2.10", None, None, SYSLOG)]),
    "three_events.bin": message([
        event(b"GREEN", 1764324000000000, b"syslog-tcp 192.0.2.10", b"linux.auth", b"web1", SYSLOG),
        event(b"TLP:amber", None, b"file /var/log/dc01.json", b"windows.security", b"dc01.example", RECORD),
        event(b"clear", -1, "file /var/log/é.log".encode(), None, b"", b""),
    ]),
    # Error paths: a count beyond the events, bytes after the last event, a bad presence byte,
    # an unknown TLP, a source that is not UTF-8.
    "count_too_large.bin": message([event(b"RED", 0, b"s", None, None, b"x")], count=0xFFFFFFFF),
    "trailing_bytes.bin": message([event(b"RED", 0, b"s", None, None, b"x")]) + b"\0",
    "bad_presence.bin": message([text(b"GREEN") + b"\2" + struct.pack("<q", 0) + text(b"s") + b"\0\0" + text(b"")]),
    "bad_tlp.bin": message([event(b"PURPLE", 0, b"s", None, None, b"")]),
    "bad_utf8.bin": message([event(b"GREEN", 0, b"\xff\xfe", None, None, b"")]),
}

out = sys.argv[1] if len(sys.argv) > 1 else "seeds/bus_batch"
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
