"""psycopg 3 through a PostgreSQL server, printing what it sees.

Run once against PostgreSQL directly and once through the gateway (in
allow-all observe mode, without masking) by crates/gateway-bin/tests/clients.rs,
which compares the two outputs section by section. Connection settings come
from the PG* environment variables. Nothing printed depends on timing or on
which server process answered (process ids are compared, not printed).

Exits non-zero if a section raises something unexpected.
"""

import sys
import threading
import time

import psycopg
from psycopg import errors, sql
from psycopg.rows import tuple_row


def section(name):
    print(f"== {name}", flush=True)


def connect(**kw):
    return psycopg.connect("", **kw)


def show(rows):
    for r in rows:
        print(repr(tuple(r)))


def run_basic(conn):
    section("types, text and binary results, server-side parameters")
    q = """select %s::int, %s::text, %s::numeric, %s::bytea, %s::int[],
                  %s::jsonb, %s::timestamptz at time zone 'UTC', null::text,
                  %s::bool, %s::float8, 'caf\u00e9'::text, repeat('x', 3)"""
    args = (42, "it's", "3.14159", b"\x00\x01\xff", [1, 2, 3], '{"a": [1, 2]}',
            "2024-02-29 12:34:56+02", True, 1.5)
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            cur.execute(q, args)
            print("binary" if binary else "text", [d.name for d in cur.description])
            show(cur.fetchall())
    with conn.cursor() as cur:
        cur.execute("select generate_series(1, 5) as n, md5(generate_series(1, 5)::text)")
        print("rowcount", cur.rowcount, "status", cur.statusmessage)
        show(cur.fetchall())
        cur.execute("select sum(i), md5(string_agg(i::text, ',')) from generate_series(1, 200000) i")
        show(cur.fetchall())


def run_ddl_dml(conn):
    section("ddl, dml, executemany, returning")
    with conn.cursor() as cur:
        cur.execute("drop table if exists psy_items")
        cur.execute("create table psy_items (id int primary key, name text, qty int default 0)")
        cur.executemany("insert into psy_items (id, name) values (%s, %s)",
                        [(i, f"item {i}") for i in range(1, 21)])
        print("executemany rowcount", cur.rowcount)
        cur.execute("update psy_items set qty = id * 2 where id > %s returning id, qty", (17,))
        show(cur.fetchall())
        print("status", cur.statusmessage)
        cur.execute("delete from psy_items where id <= 2")
        print("status", cur.statusmessage, "rowcount", cur.rowcount)
        cur.execute("select count(*), sum(qty) from psy_items")
        show(cur.fetchall())
    conn.commit()


def run_prepared(conn):
    section("prepared statements (psycopg's automatic prepare, and SQL PREPARE)")
    with conn.cursor() as cur:
        for i in range(8):
            cur.execute("select name, qty from psy_items where id = %s", (i + 3,), prepare=True)
            show(cur.fetchall())
        cur.execute("prepare by_qty(int) as select count(*) from psy_items where qty >= $1")
        for q in (0, 36, 40):
            cur.execute(sql.SQL("execute by_qty({})").format(sql.Literal(q)))
            show(cur.fetchall())
        cur.execute("deallocate by_qty")
        cur.execute("select name from pg_prepared_statements where name = 'by_qty'")
        print("after deallocate", cur.fetchall())
    conn.commit()


def run_errors(conn):
    section("errors and recovery")
    with conn.cursor() as cur:
        for stmt, args in (
            ("select 1 / %s", (0,)),
            ("insert into psy_items (id, name) values (%s, %s)", (5, "duplicate")),
            ("select * from no_such_table", None),
            ("select 'abc'::int", None),
        ):
            try:
                cur.execute(stmt, args)
            except psycopg.Error as e:
                d = e.diag
                print(type(e).__name__, e.sqlstate, d.severity, d.message_primary,
                      d.message_detail, d.constraint_name, d.table_name)
                conn.rollback()
        try:
            cur.execute("select x from (values (1)) t(y)")
        except errors.UndefinedColumn as e:
            print("undefined column at", e.diag.statement_position, e.diag.message_hint)
            conn.rollback()
        cur.execute("select 'still usable'")
        show(cur.fetchall())
    conn.commit()


def run_transactions(conn):
    section("transactions and savepoints")
    with conn.transaction():
        with conn.cursor() as cur:
            cur.execute("insert into psy_items (id, name) values (100, 'kept')")
            try:
                with conn.transaction():
                    cur.execute("insert into psy_items (id, name) values (101, 'rolled back')")
                    cur.execute("select 1 / 0")
            except errors.DivisionByZero:
                print("inner block rolled back")
    with conn.cursor() as cur:
        cur.execute("select id, name from psy_items where id >= 100 order by id")
        show(cur.fetchall())
        print("status", conn.info.transaction_status.name)
    conn.commit()


def run_pipeline(conn):
    section("pipeline mode")
    with conn.pipeline() as p:
        c1 = conn.cursor()
        c2 = conn.cursor()
        c3 = conn.cursor()
        c1.execute("select id, name from psy_items where id = %s", (3,))
        c2.execute("update psy_items set qty = qty + %s where id = %s", (1000, 3))
        c3.execute("select qty from psy_items where id = %s", (3,))
        p.sync()
        show(c1.fetchall())
        print("update", c2.statusmessage)
        show(c3.fetchall())
    conn.commit()
    # An error inside a pipeline aborts what follows up to the next sync.
    try:
        with conn.pipeline():
            with conn.cursor() as cur:
                cur.execute("insert into psy_items (id, name) values (%s, %s)", (200, "before"))
                cur.execute("select 1 / %s", (0,))
                cur.execute("insert into psy_items (id, name) values (%s, %s)", (201, "after"))
    except psycopg.Error as e:
        print("pipeline error", type(e).__name__, e.sqlstate)
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("select count(*) from psy_items where id >= 200")
        show(cur.fetchall())
    with conn.pipeline():
        with conn.cursor() as cur:
            cur.executemany("insert into psy_items (id, name) values (%s, %s)",
                            [(300 + i, f"pipelined {i}") for i in range(50)])
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("select count(*), min(name), max(name) from psy_items where id >= 300")
        show(cur.fetchall())


def run_server_cursor(conn):
    section("server-side cursors")
    with conn.cursor(name="big_cursor") as cur:
        cur.itersize = 700
        cur.execute("select i, md5(i::text) from generate_series(1, 5000) i where i %% %s = 0", (3,))
        total = 0
        first = None
        for row in cur:
            if first is None:
                first = row
            total += row[0]
        print("first", first, "sum", total)
    with conn.cursor(name="scroll_cursor", scrollable=True) as cur:
        cur.execute("select i from generate_series(1, 100) i")
        print("fetchmany", cur.fetchmany(3))
        cur.scroll(50, mode="absolute")
        print("after scroll", cur.fetchone())
        cur.scroll(-10)
        print("back", cur.fetchone())
    conn.commit()
    with conn.cursor(name="hold_cursor", withhold=True) as cur:
        cur.execute("select id from psy_items order by id")
        conn.commit()
        print("withhold after commit", cur.fetchmany(4))


def run_copy(conn):
    section("COPY in and out")
    with conn.cursor() as cur:
        cur.execute("drop table if exists psy_copy")
        cur.execute("create table psy_copy (id int, label text, score numeric, note text)")
        with cur.copy("copy psy_copy (id, label, score, note) from stdin") as copy:
            for i in range(1, 2001):
                copy.write_row((i, f"label {i}", i / 8, None if i % 7 else "tab\there"))
        print("copy in status", cur.statusmessage)
        with cur.copy("copy psy_copy (id, label) from stdin (format binary)") as copy:
            copy.set_types(["int4", "text"])
            for i in range(5000, 5010):
                copy.write_row((i, f"binary {i}"))
        cur.execute("select count(*), sum(score), count(note) from psy_copy")
        show(cur.fetchall())
        out = bytearray()
        with cur.copy("copy (select * from psy_copy order by id limit 20) to stdout") as copy:
            for block in copy:
                out += block
        print("copy out text", len(out), out.splitlines()[:3])
        rows = []
        with cur.copy("copy (select id, label from psy_copy where id >= 5000 order by id) "
                      "to stdout (format binary)") as copy:
            copy.set_types(["int4", "text"])
            rows = list(copy.rows())
        print("copy out binary", rows[:3], len(rows))
        try:
            with cur.copy("copy psy_copy (id) from stdin") as copy:
                copy.write(b"1\n2\nnot a number\n")
        except psycopg.Error as e:
            print("copy error", type(e).__name__, e.sqlstate, e.diag.message_primary)
        conn.rollback()
    conn.commit()


def run_notify(conn):
    section("LISTEN / NOTIFY")
    listener = connect(autocommit=True)
    talker = connect(autocommit=True)
    try:
        with listener.cursor() as cur:
            cur.execute("select pg_backend_pid()")
            (pid,) = cur.fetchone()
            print("listener: libpq backend pid equals pg_backend_pid():",
                  listener.info.backend_pid == pid)
            cur.execute("listen psy_channel")
        with talker.cursor() as cur:
            cur.execute("select pg_backend_pid()")
            (talker_pid,) = cur.fetchone()
            print("talker: libpq backend pid equals pg_backend_pid():",
                  talker.info.backend_pid == talker_pid)
            cur.execute("notify psy_channel, 'hello'")
            cur.execute("select pg_notify('psy_channel', %s)", ("second message",))
        with listener.cursor() as cur:
            cur.execute("notify psy_channel, 'to myself'")
        got = []
        for n in listener.notifies(timeout=10, stop_after=3):
            who = ("talker" if n.pid == talker.info.backend_pid
                   else "self" if n.pid == listener.info.backend_pid else "unknown")
            got.append((n.channel, n.payload, who))
        print("notifications", got)
    finally:
        listener.close()
        talker.close()


def run_cancel(conn):
    section("cancel")
    victim = connect(autocommit=True)
    try:
        # cancel_safe() (libpq's newer cancel API where available) and the
        # classic cancel(): both send a CancelRequest with the key libpq got;
        # pg_cancel_backend() from another session with the process id libpq
        # was told (the backend's real one).
        for how in ("cancel_safe", "cancel", "pg_cancel_backend"):
            result = {}

            def sleeper():
                try:
                    victim.execute("select pg_sleep(30)")
                    result["outcome"] = "completed"
                except errors.QueryCanceled as e:
                    result["outcome"] = f"cancelled {e.sqlstate}"
                except psycopg.Error as e:
                    result["outcome"] = f"other error {type(e).__name__} {e.sqlstate}"

            t = threading.Thread(target=sleeper)
            t.start()
            # Cancel only once the statement is running on the server.
            pid = victim.info.backend_pid
            probe = connect(autocommit=True)
            for _ in range(300):
                row = probe.execute(
                    "select count(*) from pg_stat_activity where pid = %s "
                    "and query like 'select pg_sleep%%' and state = 'active'", (pid,)).fetchone()
                if row[0]:
                    break
                time.sleep(0.05)
            if how == "pg_cancel_backend":
                print("pg_cancel_backend", probe.execute(
                    "select pg_cancel_backend(%s)", (victim.info.backend_pid,)).fetchone())
            else:
                getattr(victim, how)()
            probe.close()
            t.join(60)
            print(how, "sleeper", result.get("outcome"))
            print("after cancel", victim.execute("select 'alive'").fetchone())
    finally:
        victim.close()


def run_notices(conn):
    section("notices and parameter status")
    seen = []
    conn.add_notice_handler(lambda d: seen.append((d.severity, d.sqlstate, d.message_primary)))
    with conn.cursor() as cur:
        cur.execute("do $$ begin raise notice 'first %', 1; raise warning 'second'; end $$")
        cur.execute("set application_name = 'renamed'")
        cur.execute("set datestyle = 'SQL, DMY'")
        cur.execute("select now()::date = current_date, to_char(date '2024-01-02', 'DD Mon YYYY')")
        show(cur.fetchall())
    conn.commit()
    print("notices", seen)
    print("application_name", conn.info.parameter_status("application_name"))
    print("DateStyle", conn.info.parameter_status("DateStyle"))
    print("server_encoding", conn.info.parameter_status("server_encoding"),
          "client_encoding", conn.info.parameter_status("client_encoding"))
    print("server_version major", conn.info.server_version // 10000)


def main():
    conn = connect(row_factory=tuple_row)
    with conn.cursor() as cur:
        cur.execute("select current_user, current_database(), pg_backend_pid()")
        user, db, pid = cur.fetchone()
        print("user", user, "database", db, "backend pid agrees", conn.info.backend_pid == pid)
    conn.commit()
    for step in (run_basic, run_ddl_dml, run_prepared, run_errors, run_transactions,
                 run_pipeline, run_server_cursor, run_copy, run_notify, run_cancel,
                 run_notices):
        step(conn)
    conn.close()
    section("done")


if __name__ == "__main__":
    sys.exit(main())
