// node-postgres (npm `pg`) through a PostgreSQL server, printing what it sees.
//
// Queries without parameters go over the simple protocol, with parameters
// over the extended protocol (unnamed statements), and `name:` makes named
// prepared statements. Run directly and through the gateway by
// crates/gateway-bin/tests/clients.rs, which compares the outputs section by
// section. Connection settings come from the PG* environment variables
// (NODE_PATH points at the installed node_modules); nothing printed depends
// on timing or process ids.
'use strict'

const { Client, Pool } = require('pg')

function section(name) {
  console.log(`== ${name}`)
}

function show(value) {
  console.log(JSON.stringify(value, (k, v) => (typeof v === 'bigint' ? v.toString() : v)))
}

async function connect() {
  const c = new Client()
  await c.connect()
  return c
}

async function basic(c) {
  section('simple protocol')
  let r = await c.query("select 1 as one, 'two' as two, null as nothing, 3.5::numeric as n")
  show([r.command, r.rowCount, r.fields.map((f) => [f.name, f.dataTypeID]), r.rows])
  r = await c.query('select 1 as a; select 2 as b, 3 as c')
  show(r.map((x) => [x.command, x.rows]))
  r = await c.query('select i, md5(i::text) from generate_series(1, 3000) i')
  show([r.rowCount, r.rows[0], r.rows[2999]])

  section('extended protocol, parameters and types')
  r = await c.query(
    "select $1::int as i, $2::text as t, $3::bytea as b, $4::jsonb as j, $5::timestamptz at time zone 'UTC' as ts, $6::int[] as arr, $7::bool as flag",
    [42, "it's", Buffer.from([0, 1, 255]), { a: [1, 2] }, '2024-02-29T12:34:56+02:00', [1, 2, 3], true]
  )
  show([r.fields.map((f) => f.name), r.rows[0].i, r.rows[0].t, r.rows[0].b.toString('hex'), r.rows[0].j, r.rows[0].arr, r.rows[0].flag])
  r = await c.query({ text: 'select $1::text as x, $2::int as y', values: ['row mode', 7], rowMode: 'array' })
  show(r.rows)
  r = await c.query('select sum(i)::text from generate_series(1, 200000) i')
  show(r.rows)
}

async function dml(c) {
  section('ddl and dml')
  await c.query('drop table if exists node_items')
  let r = await c.query('create table node_items (id int primary key, name text, qty int default 0)')
  show([r.command, r.rowCount])
  for (let i = 1; i <= 20; i++) {
    await c.query('insert into node_items (id, name) values ($1, $2)', [i, `item ${i}`])
  }
  r = await c.query('update node_items set qty = id * 5 where id > $1 returning id, qty', [17])
  show([r.command, r.rowCount, r.rows])
  r = await c.query('delete from node_items where id <= 2')
  show([r.command, r.rowCount])
}

async function prepared(c) {
  section('named prepared statements')
  for (const id of [3, 18, 19, 20, 999]) {
    const r = await c.query({ name: 'item_by_id', text: 'select name, qty from node_items where id = $1', values: [id] })
    show(r.rows)
  }
  const r = await c.query('select count(*)::int as n from pg_prepared_statements')
  show(r.rows)
}

async function errors(c) {
  section('errors')
  const cases = [
    ['select 1 / $1::int', [0]],
    ['insert into node_items (id, name) values ($1, $2)', [5, 'duplicate']],
    ['select * from no_such_table', undefined],
    ['select $1::int', ['abc']],
    ['selec 1', undefined],
  ]
  for (const [text, values] of cases) {
    try {
      await c.query(text, values)
      show('no error')
    } catch (e) {
      show([e.code, e.severity, e.message, e.detail, e.constraint, e.table, e.position])
    }
  }
  show((await c.query("select 'still usable' as s")).rows)
  // Inside a transaction: the error aborts it until ROLLBACK.
  await c.query('begin')
  try {
    await c.query('select 1 / 0')
  } catch (e) {
    show(['in transaction', e.code])
  }
  try {
    await c.query('select 1')
  } catch (e) {
    show(['aborted', e.code])
  }
  await c.query('rollback')
  show((await c.query("select 'after rollback' as s")).rows)
}

async function transactions(c) {
  section('transactions')
  await c.query('begin')
  await c.query("insert into node_items (id, name) values (100, 'kept')")
  await c.query('savepoint s1')
  await c.query("insert into node_items (id, name) values (101, 'gone')")
  await c.query('rollback to savepoint s1')
  await c.query('commit')
  show((await c.query('select id, name from node_items where id >= 100')).rows)
}

async function copyTo(c) {
  section('COPY TO STDOUT (simple protocol)')
  // node-postgres has no COPY streaming without pg-copy-streams; a COPY
  // through c.query still runs on the server and its rows count.
  const r = await c.query("copy (select id, name from node_items order by id) to stdout")
  show([r.command, r.rowCount])
}

async function notify(c) {
  section('LISTEN / NOTIFY')
  const other = await connect()
  try {
    const pid = (await c.query('select pg_backend_pid() as p')).rows[0].p
    show(['processID agrees with pg_backend_pid()', c.processID === pid])
    const otherPid = (await other.query('select pg_backend_pid() as p')).rows[0].p
    const seen = []
    const done = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('notifications did not arrive')), 10000)
      c.on('notification', (n) => {
        const who = n.processId === otherPid ? 'other' : n.processId === pid ? 'self' : 'unknown'
        seen.push([n.channel, n.payload, who])
        if (seen.length === 3) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    await c.query('listen node_channel')
    await other.query("notify node_channel, 'from other'")
    await other.query("select pg_notify('node_channel', $1)", ['with pg_notify'])
    await c.query("notify node_channel, 'from self'")
    await done
    show(seen)
    await c.query('unlisten *')
  } finally {
    await other.end()
  }
}

async function cancel() {
  section('cancel')
  const victim = await connect()
  const probe = await connect()
  try {
    const pending = victim.query('select pg_sleep(30)').then(
      () => 'completed',
      (e) => `error ${e.code} ${e.message}`
    )
    for (let i = 0; i < 300; i++) {
      const r = await probe.query(
        "select count(*)::int as n from pg_stat_activity where pid = $1 and state = 'active' and query like 'select pg_sleep%'",
        [victim.processID]
      )
      if (r.rows[0].n > 0) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    // node-postgres' own cancel: a CancelRequest with the victim's
    // processID and secretKey on a new connection.
    new Client().cancel(victim, victim.activeQuery)
    show(await pending)
    show((await victim.query("select 'alive' as s")).rows)
  } finally {
    await victim.end()
    await probe.end()
  }
}

async function pool() {
  section('pool')
  const p = new Pool({ max: 4 })
  try {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => p.query('select $1::int * 2 as v', [i]).then((r) => r.rows[0].v))
    )
    show(results)
  } finally {
    await p.end()
  }
}

async function main() {
  const c = await connect()
  const who = await c.query('select current_user as u, current_database() as d')
  show(who.rows)
  await basic(c)
  await dml(c)
  await prepared(c)
  await errors(c)
  await transactions(c)
  await copyTo(c)
  await notify(c)
  await c.end()
  await cancel()
  await pool()
  section('done')
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
