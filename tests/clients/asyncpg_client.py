"""asyncpg through a PostgreSQL server, printing what it sees.

asyncpg speaks only the extended protocol, with named prepared statements,
binary formats and its own type introspection. Run directly and through the
gateway by crates/gateway-bin/tests/clients.rs, which compares the outputs
section by section. Connection settings come from the PG* environment
variables; nothing printed depends on timing or process ids.
"""

import asyncio
import datetime
import decimal
import sys

import asyncpg


def section(name):
    print(f"== {name}", flush=True)


def show(rows):
    for r in rows:
        print(repr(tuple(r)))


async def connect():
    return await asyncpg.connect()


async def basic(conn):
    section("types in binary format")
    row = await conn.fetchrow(
        """select $1::int, $2::text, $3::numeric, $4::bytea, $5::int[], $6::jsonb,
                  $7::timestamptz at time zone 'UTC', null::text, $8::bool, $9::float8,
                  'caf\u00e9'::text, interval '1 day 2 hours', '192.168.0.1/24'::inet,
                  '{"k": "v"}'::json, array['a', null, 'c']""",
        42, "it's", decimal.Decimal("3.14159"), b"\x00\x01\xff", [1, 2, 3], '{"a": [1, 2]}',
        datetime.datetime(2024, 2, 29, 10, 34, 56, tzinfo=datetime.timezone.utc), True, 1.5)
    print(repr(tuple(row)))
    print(list(row.keys()))
    print("sum", await conn.fetchval(
        "select sum(i)::bigint from generate_series(1, 200000) i"))
    rows = await conn.fetch("select i, md5(i::text) from generate_series(1, 3000) i")
    print("rows", len(rows), rows[0], rows[-1])


async def ddl_dml(conn):
    section("ddl, dml, executemany")
    await conn.execute("drop table if exists apg_items")
    status = await conn.execute(
        "create table apg_items (id int primary key, name text, qty int default 0)")
    print(status)
    await conn.executemany("insert into apg_items (id, name) values ($1, $2)",
                           [(i, f"item {i}") for i in range(1, 31)])
    print(await conn.execute("update apg_items set qty = id * 3 where id > $1", 25))
    show(await conn.fetch("delete from apg_items where id <= $1 returning id", 3))
    print(await conn.fetchrow("select count(*), sum(qty) from apg_items"))


async def prepared(conn):
    section("prepared statements")
    stmt = await conn.prepare("select name, qty from apg_items where id = $1")
    print([a.name for a in stmt.get_attributes()], [p.name for p in stmt.get_parameters()])
    for i in (4, 26, 30, 999):
        print(await stmt.fetchrow(i))
    many = await conn.prepare("select id from apg_items where qty >= $1 order by id")
    print(await many.fetch(80))
    print("explain", (await stmt.explain(5))[0]["Plan"]["Node Type"])
    # The same text again is served from asyncpg's statement cache.
    for _ in range(3):
        print(await conn.fetchval("select count(*) from apg_items where qty > $1", 0))


async def errors(conn):
    section("errors")
    for query, args in (
        ("select 1 / $1::int", (0,)),
        ("insert into apg_items (id, name) values ($1, $2)", (10, "duplicate")),
        ("select * from no_such_table", ()),
        ("select $1::int", ("abc",)),
    ):
        try:
            await conn.fetch(query, *args)
        except (asyncpg.PostgresError, asyncpg.DataError) as e:
            print(type(e).__name__, getattr(e, "sqlstate", None), getattr(e, "message", str(e)),
                  getattr(e, "detail", None), getattr(e, "constraint_name", None))
    print(await conn.fetchval("select 'still usable'"))


async def transactions(conn):
    section("transactions and cursors")
    async with conn.transaction():
        await conn.execute("insert into apg_items (id, name) values (100, 'kept')")
        try:
            async with conn.transaction():
                await conn.execute("insert into apg_items (id, name) values (101, 'gone')")
                await conn.execute("select 1 / 0")
        except asyncpg.DivisionByZeroError:
            print("savepoint rolled back")
    show(await conn.fetch("select id, name from apg_items where id >= 100"))
    async with conn.transaction():
        total = 0
        count = 0
        async for r in conn.cursor("select i from generate_series(1, 4000) i", prefetch=333):
            total += r[0]
            count += 1
        print("cursor iteration", count, total)
        cur = await conn.cursor("select i from generate_series(1, 100) i")
        print(await cur.fetch(3))
        await cur.forward(40)
        print(await cur.fetchrow())
    try:
        async with conn.transaction(isolation="serializable", readonly=True):
            await conn.execute("insert into apg_items (id, name) values (102, 'x')")
    except asyncpg.ReadOnlySQLTransactionError as e:
        print("read only", e.sqlstate)


async def copy(conn):
    section("COPY")
    await conn.execute("drop table if exists apg_copy")
    await conn.execute("create table apg_copy (id int, label text, score numeric)")
    print(await conn.copy_records_to_table(
        "apg_copy", records=[(i, f"label {i}", decimal.Decimal(i) / 4) for i in range(1, 1501)]))
    print(await conn.fetchrow("select count(*), sum(score) from apg_copy"))
    chunks = []

    async def sink(data):
        chunks.append(bytes(data))

    print(await conn.copy_from_query(
        "select * from apg_copy where id <= $1 order by id", 10, output=sink, format="csv"))
    print(b"".join(chunks).decode().splitlines()[:3])
    chunks.clear()
    print(await conn.copy_from_table("apg_copy", output=sink, columns=["id"], format="text"))
    print("table copy bytes", len(b"".join(chunks)))


async def notify(conn):
    section("LISTEN / NOTIFY")
    other = await connect()
    try:
        got = asyncio.Queue()
        def on_notify(_conn, pid, channel, payload):
            got.put_nowait((pid, channel, payload))

        await conn.add_listener("apg_channel", on_notify)
        print("pid agrees", conn.get_server_pid() == await conn.fetchval("select pg_backend_pid()"))
        await other.execute("notify apg_channel, 'from other'")
        await other.execute("select pg_notify('apg_channel', $1)", "with pg_notify")
        await conn.execute("notify apg_channel, 'from self'")
        seen = []
        for _ in range(3):
            pid, channel, payload = await asyncio.wait_for(got.get(), 10)
            who = ("other" if pid == other.get_server_pid()
                   else "self" if pid == conn.get_server_pid() else "unknown")
            seen.append((channel, payload, who))
        print(sorted(seen))
        await conn.remove_listener("apg_channel", on_notify)
    finally:
        await other.close()


async def cancel(conn):
    section("cancel (statement timeout on the client)")
    try:
        await conn.fetch("select pg_sleep(30)", timeout=1.0)
        print("completed")
    except asyncio.TimeoutError:
        print("timed out; asyncpg cancels the statement")
    print(await conn.fetchval("select 'alive'"))
    task = asyncio.ensure_future(conn.execute("select pg_sleep(30)"))
    await asyncio.sleep(0.5)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        print("task cancelled")
    print(await conn.fetchval("select 'alive again'"))


async def pool():
    section("pool")
    p = await asyncpg.create_pool(min_size=2, max_size=4)
    try:
        results = await asyncio.gather(*[
            p.fetchval("select $1::int * 2", i) for i in range(20)])
        print(results)
    finally:
        await p.close()


async def main():
    conn = await connect()
    print("user", await conn.fetchval("select current_user"),
          "pid agrees", conn.get_server_pid() == await conn.fetchval("select pg_backend_pid()"))
    for step in (basic, ddl_dml, prepared, errors, transactions, copy, notify, cancel):
        await step(conn)
    await conn.close()
    await pool()
    section("done")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
