#!/usr/bin/env python3
"""Writes a small synthetic EVTX chunk (64 KiB, trailing zeros trimmed) for the evtx_chunk
fuzz seed. Everything here is made up; no real log data."""
import struct, sys, zlib

CHUNK = 65536
buf = bytearray(CHUNK)
buf[0:8] = b"ElfChnk\0"
pos = 512
names = {}

def w(b):
    global pos
    buf[pos:pos + len(b)] = b
    pos += len(b)

def u8(v): w(struct.pack("<B", v))
def u16(v): w(struct.pack("<H", v))
def u32(v): w(struct.pack("<I", v))
def u64(v): w(struct.pack("<Q", v))

def patch32(at, v): buf[at:at + 4] = struct.pack("<I", v)

def name_hash(s):
    h = 0
    for c in s.encode("utf-16-le")[::2]:
        h = (h * 65599 + c) & 0xFFFFFFFF
    return h & 0xFFFF

def name(s):
    """A name reference: inline the first time, by offset afterwards."""
    if s in names:
        u32(names[s]); return
    off = pos + 4
    names[s] = off
    u32(off)
    u32(0); u16(name_hash(s)); u16(len(s)); w(s.encode("utf-16-le")); u16(0)

def utf16_value(s):
    u8(0x05); u8(0x01); u16(len(s)); w(s.encode("utf-16-le"))

class Elem:
    def __init__(self, tag, attrs=(), dep=False):
        self.tag, self.attrs, self.dep = tag, list(attrs), dep
    def __enter__(self):
        u8(0x41 if self.attrs else 0x01)
        if self.dep: u16(0xFFFF)
        self.size_at = pos; u32(0)
        name(self.tag)
        if self.attrs:
            la = pos; u32(0)
            for i, (k, v) in enumerate(self.attrs):
                u8(0x46 if i + 1 < len(self.attrs) else 0x06)
                name(k)
                v()
            patch32(la, pos - la - 4)
        return self
    def close_start(self): u8(0x02)
    def __exit__(self, *a):
        pass

def empty(tag, attrs, dep):
    e = Elem(tag, attrs, dep); e.__enter__(); u8(0x03); patch32(e.size_at, pos - e.size_at - 4)

def leaf(tag, val, dep, attrs=()):
    e = Elem(tag, attrs, dep); e.__enter__(); e.close_start(); val(); u8(0x04); patch32(e.size_at, pos - e.size_at - 4)

def sub(i, t): return lambda: (u8(0x0d), u16(i), u8(t))
def text(s): return lambda: utf16_value(s)

def open_(tag, attrs=(), dep=False):
    e = Elem(tag, attrs, dep); e.__enter__(); e.close_start(); return e
def close(e):
    u8(0x04); patch32(e.size_at, pos - e.size_at - 4)

FILETIME = 134119584000000000  # 2026-01-04T00:00:00Z

def record(rec_id, body):
    start = pos
    w(b"**\0\0"); size_at = pos; u32(0); u64(rec_id); u64(FILETIME + rec_id * 10_000_000)
    body()
    size = pos - start + 4
    u32(size); patch32(size_at, size)
    return start

template_def_offset = None

def templated_body():
    global template_def_offset
    w(b"\x0f\x01\x01\x00")
    u8(0x0c); u8(0x01); u32(0x1234)
    template_def_offset = pos + 4
    u32(template_def_offset)
    u32(0); w(bytes(range(16))); ds_at = pos; u32(0)
    t0 = pos
    w(b"\x0f\x01\x01\x00")
    ev = open_("Event", [("xmlns", text("http://schemas.microsoft.com/win/2004/08/events/event"))], True)
    sy = open_("System", (), True)
    empty("Provider", [("Name", sub(0, 0x01)), ("Guid", sub(9, 0x0f))], True)
    leaf("EventID", sub(1, 0x06), True, [("Qualifiers", lambda: (u8(0x0e), u16(10), u8(0x06)))])
    empty("TimeCreated", [("SystemTime", sub(2, 0x11))], True)
    leaf("EventRecordID", sub(3, 0x0a), True)
    leaf("Channel", sub(4, 0x01), True)
    leaf("Computer", sub(5, 0x01), True)
    empty("Security", [("UserID", lambda: (u8(0x0e), u16(11), u8(0x13)))], True)
    close(sy)
    ed = open_("EventData", (), True)
    leaf("Data", sub(6, 0x01), True, [("Name", text("TargetUserName"))])
    leaf("Data", sub(7, 0x08), True, [("Name", text("LogonType"))])
    leaf("Data", sub(8, 0x01), True, [("Name", text("IpAddress"))])
    leaf("Data", lambda: (u8(0x0e), u16(12), u8(0x0e)), True, [("Name", text("Blob"))])
    close(ed)
    close(ev)
    u8(0x00)
    patch32(ds_at, pos - t0)
    values("alice", 1)

def values(user, rec):
    def s(x): return x.encode("utf-16-le")
    vals = [
        (0x01, s("Microsoft-Windows-Security-Auditing")),
        (0x06, struct.pack("<H", 4624)),
        (0x11, struct.pack("<Q", FILETIME)),
        (0x0a, struct.pack("<Q", rec)),
        (0x01, s("Security")),
        (0x01, s("WS01.example.test")),
        (0x01, s(user)),
        (0x08, struct.pack("<I", 3)),
        (0x01, s("192.0.2.10")),
        (0x0f, bytes(range(16, 32))),
        (0x06, struct.pack("<H", 0)),
        (0x13, bytes([1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0])),  # S-1-5-18
        (0x0e, b"\xde\xad\xbe\xef"),
    ]
    u32(len(vals))
    for t, d in vals:
        u16(len(d)); u8(t); u8(0)
    for t, d in vals:
        w(d)
    u8(0x00)

def reuse_body():
    """A second instance of the template, referenced by offset (not inline)."""
    w(b"\x0f\x01\x01\x00")
    u8(0x0c); u8(0x01); u32(0x1234); u32(template_def_offset)
    values("bob", 3)

def direct_body():
    w(b"\x0f\x01\x01\x00")
    ev = open_("Event")
    sy = open_("System")
    empty("Provider", [("Name", text("Service Control Manager"))], False)
    leaf("EventID", text("7045"), False)
    leaf("Channel", text("System"), False)
    leaf("Computer", text("WS01"), False)
    close(sy)
    ed = open_("EventData")
    leaf("Data", text("one"), False)
    leaf("Data", text("two & <three>"), False)
    close(ed)
    close(ev)
    u8(0x00)

r1 = record(1, templated_body)
r2 = record(2, direct_body)
r3 = record(3, reuse_body)
free = pos
struct.pack_into("<QQQQ", buf, 8, 1, 3, 1, 3)
struct.pack_into("<III", buf, 40, 128, r3, free)
struct.pack_into("<I", buf, 52, zlib.crc32(bytes(buf[512:free])))
struct.pack_into("<I", buf, 384, template_def_offset)
struct.pack_into("<I", buf, 120, 0)
struct.pack_into("<I", buf, 124, zlib.crc32(bytes(buf[0:120]) + bytes(buf[128:512])))
# The fuzz target pads short inputs with zeros, so the trailing zeros can go.
sys.stdout.buffer.write(bytes(buf[:free]))
