-- psql through a PostgreSQL server: run with
--   psql -X -a -v VERBOSITY=verbose -f psql_script.sql
-- once directly and once through the gateway by
-- crates/gateway-bin/tests/clients.rs, which compares everything psql printed
-- (stdout and stderr). Errors are part of the script: psql goes on after them.
\echo == setup
\set ON_ERROR_STOP 0
\pset pager off
set client_min_messages = warning;
drop table if exists psql_items, psql_copy;
reset client_min_messages;
create table psql_items (id int primary key, name text not null, price numeric(10, 2), tags text[], meta jsonb, created date);
insert into psql_items
  select i, 'item ' || i, i * 1.25, array['t' || (i % 3), 't' || (i % 5)], jsonb_build_object('n', i, 'even', i % 2 = 0), date '2024-01-01' + i
  from generate_series(1, 50) i;

\echo == queries and formats
select id, name, price, tags, meta, created from psql_items where id <= 5 order by id;
\x on
select * from psql_items where id = 7;
\x off
\pset format unaligned
select count(*), sum(price), min(created), max(created) from psql_items;
\pset format csv
select id, name, tags from psql_items where id between 10 and 12 order by id;
\pset format aligned
select name from psql_items where id = 1 \gset
\echo the name is :name
select id, price from psql_items where id < 4 order by id \gdesc
select i % 3 as r, i % 2 as c, count(*) from generate_series(1, 30) i group by 1, 2 order by 1, 2 \crosstabview
select sum(i), md5(string_agg(i::text, ',')) from generate_series(1, 100000) i;

\echo == describe (catalog queries)
\d psql_items
\dt psql_*
\df pg_backend_pid

\echo == errors
select 1 / 0;
\errverbose
insert into psql_items (id, name) values (1, 'duplicate');
select nope from psql_items;
selec 1;
insert into psql_items (id) values (999);
select 'after errors';

\echo == transactions
begin;
insert into psql_items (id, name) values (100, 'kept');
savepoint s1;
insert into psql_items (id, name) values (101, 'rolled back');
select 1 / 0;
rollback to savepoint s1;
commit;
select id, name from psql_items where id >= 100 order by id;
begin;
select 1 / 0;
select 'ignored in an aborted transaction';
rollback;
begin;
update psql_items set price = price * 2 where id <= 10;
select sum(price) from psql_items where id <= 10;
rollback;
select sum(price) from psql_items where id <= 10;

\echo == multi-statement query strings
select 1 as a \; select 2 as b \; select 3 as c;
insert into psql_items (id, name) values (200, 'x') \; select 1 / 0 \; insert into psql_items (id, name) values (201, 'y');
select count(*) from psql_items where id >= 200;

\echo == prepared statements and gexec
prepare by_id (int) as select id, name from psql_items where id = $1;
execute by_id(3);
execute by_id(42);
deallocate by_id;
select format('select %s as gexec_%s', i, i) from generate_series(1, 3) i \gexec

\echo == COPY
create table psql_copy (id int, label text, note text);
copy psql_copy from stdin;
1	one	\N
2	two	two words
3	three	x
\.
copy psql_copy from stdin (format csv);
4,four,"quoted, comma"
5,five,
\.
copy psql_copy from stdin;
6	six	x
not a number	bad	x
\.
select * from psql_copy order by id;
copy (select id, name, price from psql_items where id <= 5 order by id) to stdout;
copy (select id, name from psql_items where id <= 3 order by id) to stdout (format csv, header);
\copy (select id, label from psql_copy order by id) to stdout
\copy psql_copy (id, label) from stdin
7	seven
\.
select count(*) from psql_copy;

\echo == notices and settings
do $$ begin raise notice 'a notice %', 42; raise warning 'a warning'; end $$;
set client_min_messages = warning;
do $$ begin raise notice 'not shown'; raise warning 'shown'; end $$;
reset client_min_messages;
set datestyle = 'German';
select date '2024-03-01';
show datestyle;
reset datestyle;

\echo == done
