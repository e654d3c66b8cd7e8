#!/usr/bin/env python3
"""Writes the seed scripts of the `pg_session` fuzz target (format: see
`portcullis_pg::internal::fuzz_session_script`). Replayed by
crates/protocol-pg/tests/fuzz_replay.rs; copy crashers into the same folder."""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pg_session")


def step(op, payload=b""):
    return bytes([op]) + struct.pack(">H", len(payload)) + payload


def msg(tag, body):
    return tag + struct.pack(">I", len(body) + 4) + body


def startup(params):
    body = struct.pack(">I", 196608)
    for k, v in params:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack(">I", len(body) + 4) + body


def q(sql):
    return msg(b"Q", sql.encode() + b"\0")


def status(k, v):
    return msg(b"S", k.encode() + b"\0" + v.encode() + b"\0")


AUTH_OK = msg(b"R", struct.pack(">I", 0))
READY = msg(b"Z", b"I")
SMUGGLED = "SELECT '\\', ' ; DELETE FROM shop.orders; --'"


def login(params=(("user", "u"),), lenient=True):
    return (
        step(0, startup(params))
        + step(0, msg(b"p", b"token\0"))
        + step(2, bytes([8 if lenient else 0]))
        + step(7)
        + step(1, AUTH_OK + status("standard_conforming_strings", "on") + READY)
    )


def parse(name, sql):
    return msg(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + b"\0\0")


BIND = msg(b"B", b"\0\0\0\0\0\0\0\0")
EXECUTE = msg(b"E", b"\0\0\0\0\0")
SYNC = msg(b"S", b"")

SEEDS = {
    "set-then-smuggled-pipelined": login()
    + step(0, q("SET standard_conforming_strings = off") + q(SMUGGLED))
    + step(2, b"\0")
    + step(1, msg(b"C", b"SET\0") + status("standard_conforming_strings", "off") + READY)
    + step(2, b"\0"),
    "startup-options-strict": login((("user", "u"), ("options", "-c standard_conforming_strings=off")), False),
    "startup-options-dropped": login((("user", "u"), ("options", "-c x=y"), ("client_encoding", "SJIS")), True)
    + step(0, q("select 1"))
    + step(2, b"\0"),
    "ssl-request-pipelined": step(0, struct.pack(">II", 8, 80877103) + startup((("user", "u"),))),
    "md5-strict": step(0, startup((("user", "u"),)))
    + step(0, msg(b"p", b"token\0"))
    + step(2, b"\0")
    + step(7)
    + step(1, msg(b"R", struct.pack(">I", 5) + b"salt")),
    "scram-then-premature-ok": step(0, startup((("user", "u"),)))
    + step(0, msg(b"p", b"token\0"))
    + step(2, b"\0")
    + step(7)
    + step(1, msg(b"R", struct.pack(">I", 10) + b"SCRAM-SHA-256\0\0"))
    + step(1, AUTH_OK + READY),
    "extended-set-then-smuggled": login()
    + step(0, parse("", "SET standard_conforming_strings = off") + BIND + EXECUTE + parse("", SMUGGLED) + BIND + EXECUTE + SYNC)
    + step(2, b"\0")
    + step(2, b"\0")
    + step(1, msg(b"1", b"") + msg(b"2", b"") + msg(b"n", b"") + msg(b"C", b"SET\0"))
    + step(1, READY),
    "gigabyte-length": login() + step(0, b"Q" + struct.pack(">I", 1 << 30)),
    "held-then-closed": login() + step(0, q("DELETE FROM t")) + step(2, b"\3") + step(4),
    "slow-startup-timeout": step(0, b"\0\0") + step(3, b"\x40"),
}

os.makedirs(HERE, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
print(f"{len(SEEDS)} seeds in {HERE}")
