SELECT * FROM films
---
SELECT f.title, f.did, d.name, f.date_prod, f.kind FROM distributors d JOIN films f USING (did)
---
SELECT kind, sum(len) AS total FROM films GROUP BY kind
---
SELECT kind, sum(len) AS total FROM films GROUP BY kind HAVING sum(len) < interval '5 hours'
---
SELECT * FROM distributors ORDER BY name
---
SELECT * FROM distributors ORDER BY 2
---
SELECT distributors.name FROM distributors WHERE distributors.name LIKE 'W%' UNION SELECT actors.name FROM actors WHERE actors.name LIKE 'W%'
---
SELECT * FROM distributors_2(111) AS (f1 int, f2 text)
---
SELECT * FROM unnest(ARRAY['a','b','c','d','e','f']) WITH ORDINALITY
---
WITH t AS (SELECT random() as x FROM generate_series(1, 3)) SELECT * FROM t UNION ALL SELECT * FROM t
---
WITH RECURSIVE employee_recursive(distance, employee_name, manager_name) AS (SELECT 1, employee_name, manager_name FROM employee WHERE manager_name = 'Mary' UNION ALL SELECT er.distance + 1, e.employee_name, e.manager_name FROM employee_recursive er, employee e WHERE er.employee_name = e.manager_name) SELECT distance, employee_name FROM employee_recursive
---
SELECT m.name AS mname, pname FROM manufacturers m, LATERAL get_product_names(m.id) pname
---
SELECT m.name AS mname, pname FROM manufacturers m LEFT JOIN LATERAL get_product_names(m.id) pname ON true
---
SELECT 2+2
---
SELECT distinct ON (location) location, time, report FROM weather_reports ORDER BY location, time DESC
---
SELECT * FROM films TABLESAMPLE BERNOULLI (10) REPEATABLE (42)
---
SELECT * FROM films WHERE title IS NOT NULL FETCH FIRST 10 ROWS ONLY
---
SELECT count(*) FILTER (WHERE kind = 'Comedy'), percentile_cont(0.5) WITHIN GROUP (ORDER BY len) FROM films
---
SELECT region, product, sum(amount) FROM sales GROUP BY GROUPING SETS ((region), (product), ())
---
SELECT depname, empno, salary, avg(salary) OVER (PARTITION BY depname) FROM empsalary
---
SELECT salary, sum(salary) OVER w, avg(salary) OVER w FROM empsalary WINDOW w AS (PARTITION BY depname ORDER BY salary DESC)
---
TABLE films
---
VALUES (1, 'one'), (2, 'two'), (3, 'three')
---
SELECT * FROM (VALUES (1, 'one'), (2, 'two')) AS t (num, letter)
---
SELECT f.* FROM films f, (VALUES('MGM', 'Horror'), ('UA', 'Sci-Fi')) AS t (studio, kind) WHERE f.studio = t.studio AND f.kind = t.kind
---
SELECT current_user, session_user, current_database(), current_schema(), version()
---
SELECT now(), current_timestamp, clock_timestamp(), statement_timestamp()
---
SELECT coalesce(description, short_description, '(none)') FROM items
---
SELECT CASE WHEN a = 1 THEN 'one' WHEN a = 2 THEN 'two' ELSE 'other' END FROM test
---
SELECT a, b FROM t WHERE (a, b) IN (SELECT x, y FROM u) AND EXISTS (SELECT 1 FROM v WHERE v.a = t.a)
---
SELECT json_build_object('id', id, 'tags', array_agg(tag)) FROM posts JOIN tags ON tags.post_id = posts.id GROUP BY posts.id
---
SELECT data->>'name', data #> '{a,b}', data @> '{"x": 1}' FROM docs WHERE data ? 'name'
---
SELECT to_tsvector('english', body) @@ plainto_tsquery('english', 'fat rats') FROM messages
---
SELECT id FROM users WHERE email ILIKE '%@example.com' ORDER BY created_at DESC LIMIT 20 OFFSET 40
---
SELECT substring(name FROM 1 FOR 3), position('a' IN name), trim(both ' ' FROM name), extract(year FROM created_at) FROM users
---
SELECT date_trunc('day', created_at) AS day, count(*) FROM events WHERE created_at > now() - interval '7 days' GROUP BY 1 ORDER BY 1
---
SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2
---
SELECT "users"."id", "users"."email" FROM "users" WHERE "users"."email" = 'a@b.c' ORDER BY "users"."id" ASC LIMIT 1
---
SELECT "auth_user"."id", "auth_user"."password", "auth_user"."last_login", "auth_user"."is_superuser", "auth_user"."username" FROM "auth_user" WHERE "auth_user"."username" = 'admin' LIMIT 21
---
SELECT COUNT(*) AS "__count" FROM "django_session" WHERE "django_session"."expire_date" > '2024-01-01T00:00:00+00:00'::timestamptz
---
SELECT "django_migrations"."id", "django_migrations"."app", "django_migrations"."name", "django_migrations"."applied" FROM "django_migrations"
---
select user0_.id as id1_0_, user0_.email as email2_0_ from users user0_ where user0_.email=?
---
SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.id = %(pk_1)s
---
SELECT "public"."User"."id", "public"."User"."email" FROM "public"."User" WHERE "public"."User"."id" = $1 LIMIT $2 OFFSET $3
---
SELECT t0."id", t0."name" FROM "accounts" AS t0 WHERE (t0."id" = $1)
---
SELECT "schema_migrations"."version" FROM "schema_migrations" ORDER BY "schema_migrations"."version" ASC
---
SELECT 1 AS one FROM "users" WHERE "users"."email" = $1 LIMIT $2
---
SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod, c.collname, col_description(a.attrelid, a.attnum) AS comment FROM pg_attribute a LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum LEFT JOIN pg_type t ON a.atttypid = t.oid LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation WHERE a.attrelid = '"users"'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
---
SELECT t.oid, t.typname FROM pg_type as t WHERE t.typname IN ('int2', 'int4', 'int8', 'oid', 'float4', 'float8', 'bool')
---
SELECT c.relname FROM pg_class c LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY (current_schemas(false)) AND c.relname = 'schema_migrations' AND c.relkind IN ('r','p')
---
SELECT n.nspname as "Schema", c.relname as "Name", CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type", pg_catalog.pg_get_userbyid(c.relowner) as "Owner" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam WHERE c.relkind IN ('r','p','v','m','S','f','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema' AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2
---
SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(users)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3
---
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef), a.attnotnull, (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation, a.attidentity, a.attgenerated FROM pg_catalog.pg_attribute a WHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
---
SELECT d.datname as "Name", pg_catalog.pg_get_userbyid(d.datdba) as "Owner", pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding", d.datcollate as "Collate", d.datctype as "Ctype", pg_catalog.array_to_string(d.datacl, E'\n') AS "Access privileges" FROM pg_catalog.pg_database d ORDER BY 1
---
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolconnlimit, r.rolvaliduntil, r.rolreplication, r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1
---
SELECT n.nspname AS "Name", pg_catalog.pg_get_userbyid(n.nspowner) AS "Owner" FROM pg_catalog.pg_namespace n WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' ORDER BY 1
---
SELECT pid, usename, application_name, client_addr, state, wait_event_type, wait_event, now() - query_start AS duration, query FROM pg_stat_activity WHERE state <> 'idle' ORDER BY duration DESC
---
SELECT datname, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, deadlocks FROM pg_stat_database
---
SELECT relname, seq_scan, idx_scan, n_live_tup, n_dead_tup, last_autovacuum, last_autoanalyze FROM pg_stat_user_tables ORDER BY n_dead_tup DESC LIMIT 20
---
SELECT schemaname, relname, pg_size_pretty(pg_total_relation_size(relid)) AS total, pg_size_pretty(pg_relation_size(relid)) AS table_size FROM pg_catalog.pg_statio_user_tables ORDER BY pg_total_relation_size(relid) DESC
---
SELECT pg_size_pretty(pg_database_size(current_database()))
---
SELECT blocked_locks.pid AS blocked_pid, blocking_locks.pid AS blocking_pid, blocked_activity.query AS blocked_statement FROM pg_catalog.pg_locks blocked_locks JOIN pg_catalog.pg_stat_activity blocked_activity ON blocked_activity.pid = blocked_locks.pid JOIN pg_catalog.pg_locks blocking_locks ON blocking_locks.locktype = blocked_locks.locktype AND blocking_locks.pid != blocked_locks.pid WHERE NOT blocked_locks.granted
---
SELECT pid, pg_blocking_pids(pid) AS blocked_by, query FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0
---
SELECT client_addr, state, sent_lsn, write_lsn, flush_lsn, replay_lsn, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS lag_bytes FROM pg_stat_replication
---
SELECT pg_is_in_recovery()
---
SELECT slot_name, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM pg_replication_slots
---
SELECT query, calls, total_exec_time, mean_exec_time, rows FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 10
---
SELECT indexrelname, idx_scan, pg_size_pretty(pg_relation_size(indexrelid)) FROM pg_stat_user_indexes WHERE idx_scan = 0 ORDER BY pg_relation_size(indexrelid) DESC
---
SELECT name, setting, unit, source FROM pg_settings WHERE name IN ('max_connections', 'shared_buffers', 'work_mem')
---
SELECT current_setting('server_version_num')::int
---
SELECT age(datfrozenxid), datname FROM pg_database ORDER BY 1 DESC
---
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
---
SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position
---
SELECT tc.constraint_name, kcu.column_name, ccu.table_name AS foreign_table_name FROM information_schema.table_constraints AS tc JOIN information_schema.key_column_usage AS kcu ON tc.constraint_name = kcu.constraint_name JOIN information_schema.constraint_column_usage AS ccu ON ccu.constraint_name = tc.constraint_name WHERE tc.constraint_type = 'FOREIGN KEY'
---
SELECT has_table_privilege('users', 'SELECT'), has_schema_privilege('public', 'USAGE')
---
SELECT pg_get_viewdef('comedies'::regclass, true)
---
SELECT pg_get_functiondef('lower(text)'::regprocedure)
---
SELECT indexdef FROM pg_indexes WHERE tablename = 'users'
---
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'users'::regclass
---
SELECT gen_random_uuid(), random(), md5('x'), encode(sha256('x'), 'hex')
---
SELECT to_char(now(), 'YYYY-MM-DD'), to_date('2024-01-01', 'YYYY-MM-DD'), make_interval(days => 3)
---
SELECT string_agg(name, ', ' ORDER BY name), array_agg(DISTINCT kind) FROM films
---
SELECT jsonb_path_query(data, '$.items[*] ? (@.price > 10)') FROM docs
---
SELECT regexp_replace(name, '\s+', ' ', 'g'), split_part(email, '@', 2) FROM users
---
SELECT currval('serial')
---
SELECT * FROM generate_series('2024-01-01'::date, '2024-12-31'::date, '1 month'::interval) AS d
---
SELECT 1 WHERE 'x' ~ 'y' OR 'a' = ANY('{a,b}'::text[])
---
SELECT id, rank() OVER (ORDER BY score DESC), lag(score) OVER (ORDER BY id), ntile(4) OVER () FROM scores
---
SELECT a.id, b.total FROM a FULL OUTER JOIN (SELECT id, sum(x) AS total FROM b GROUP BY id) b ON a.id = b.id
---
SELECT * FROM films WHERE date_prod BETWEEN '2000-01-01' AND '2010-12-31' AND kind NOT IN ('Horror')
---
SELECT x::numeric(10,2), y::varchar(20), CAST(z AS timestamp with time zone) FROM t
---
EXPLAIN SELECT * FROM foo
---
EXPLAIN SELECT * FROM foo WHERE i = 4
---
EXPLAIN (FORMAT JSON) SELECT * FROM foo
---
EXPLAIN (FORMAT YAML) SELECT * FROM foo WHERE i='4'
---
EXPLAIN (COSTS FALSE) SELECT * FROM foo WHERE i = 4
---
EXPLAIN SELECT sum(i) FROM foo WHERE i < 10
---
EXPLAIN ANALYZE SELECT * FROM foo WHERE i = 4
---
EXPLAIN (ANALYZE, BUFFERS, VERBOSE) SELECT * FROM films WHERE kind = 'Comedy'
---
EXPLAIN (ANALYZE false) DELETE FROM users
---
EXPLAIN DELETE FROM users
---
EXPLAIN UPDATE accounts SET balance = 0
---
EXPLAIN INSERT INTO films SELECT * FROM films
---
EXPLAIN (GENERIC_PLAN) SELECT * FROM films WHERE did = $1
---
EXPLAIN SELECT set_config('role', 'x', false)
---
SHOW DateStyle
---
SHOW geqo
---
SHOW ALL
---
SHOW search_path
---
SHOW server_version
---
SHOW transaction isolation level
---
SHOW TIME ZONE
---
SHOW "TimeZone"
---
BEGIN
---
BEGIN WORK
---
BEGIN TRANSACTION
---
BEGIN ISOLATION LEVEL REPEATABLE READ
---
BEGIN READ ONLY
---
BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE
---
START TRANSACTION
---
START TRANSACTION ISOLATION LEVEL SERIALIZABLE READ ONLY
---
COMMIT
---
COMMIT WORK
---
COMMIT AND CHAIN
---
END
---
END TRANSACTION
---
ROLLBACK
---
ROLLBACK WORK
---
ABORT
---
SAVEPOINT my_savepoint
---
RELEASE SAVEPOINT my_savepoint
---
RELEASE my_savepoint
---
ROLLBACK TO SAVEPOINT my_savepoint
---
ROLLBACK TO my_savepoint
---
SET TRANSACTION ISOLATION LEVEL SERIALIZABLE
---
SET TRANSACTION READ ONLY
---
SET TRANSACTION SNAPSHOT '00000003-0000001B-1'
---
SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED
---
SET CONSTRAINTS ALL DEFERRED
---
SET datestyle TO postgres, dmy
---
SET TIME ZONE 'PST8PDT'
---
SET TIME ZONE LOCAL
---
SET statement_timeout = '5s'
---
SET LOCAL lock_timeout = '1s'
---
SET application_name = 'psql'
---
SET extra_float_digits = 3
---
SET client_min_messages TO warning
---
SET intervalstyle = iso_8601
---
SET work_mem = '64MB'
---
SET SESSION statement_timeout TO 0
---
RESET timezone
---
RESET statement_timeout
---
DECLARE liahona CURSOR FOR SELECT * FROM films
---
DECLARE c1 SCROLL CURSOR WITH HOLD FOR SELECT * FROM films ORDER BY title
---
DECLARE c2 BINARY NO SCROLL CURSOR WITHOUT HOLD FOR SELECT id, title FROM films
---
DECLARE "c3" INSENSITIVE CURSOR FOR SELECT * FROM distributors
---
FETCH FORWARD 5 FROM liahona
---
FETCH PRIOR FROM liahona
---
FETCH ALL IN "c3"
---
FETCH NEXT FROM c1
---
FETCH 100 FROM c1
---
FETCH ABSOLUTE 3 FROM c1
---
FETCH BACKWARD ALL FROM c1
---
MOVE FORWARD 5 IN liahona
---
MOVE LAST FROM c1
---
MOVE ABSOLUTE 0 FROM c1
---
CLOSE liahona
---
CLOSE ALL
---
LISTEN virtual
---
UNLISTEN virtual
---
UNLISTEN *
---
PREPARE usrrptplan (int) AS SELECT * FROM users u, logs l WHERE u.usrid=$1 AND u.usrid=l.usrid AND l.date = $2
---
PREPARE q1 AS SELECT * FROM films WHERE did = $1
---
DEALLOCATE usrrptplan
---
DEALLOCATE PREPARE ALL
---
DEALLOCATE ALL
---
DISCARD PLANS
---
SELECT pg_catalog.pg_get_serial_sequence('users', 'id')
---
SELECT oid, typname, typarray, typtype FROM pg_type WHERE typname IN ('hstore', 'citext')
---
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'postgis')
---
SELECT t.typname, t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public'
---
SELECT version FROM flyway_schema_history ORDER BY installed_rank DESC LIMIT 1
---
SELECT ID, LOCKED, LOCKGRANTED, LOCKEDBY FROM public.databasechangeloglock WHERE ID=1
---
SELECT "name", "checksum" FROM "_prisma_migrations" ORDER BY "started_at" ASC
---
select * from "knex_migrations" order by "id" asc
---
SELECT 1
---
select 1;
---
SELECT NULL::text AS a, 'x'::text AS b
---
SELECT $1::int + 1
---
SELECT pg_backend_pid()
---
SELECT inet_server_addr(), inet_server_port()
---
SELECT pg_postmaster_start_time(), pg_conf_load_time()
---
SELECT txid_current_snapshot()
---
SELECT pg_size_pretty(pg_indexes_size('films')), pg_size_pretty(pg_table_size('films'))
---
SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'public'
---
SELECT obj_description('films'::regclass, 'pg_class')
---
SELECT * FROM pg_locks WHERE NOT granted
---
SELECT wait_event_type, count(*) FROM pg_stat_activity GROUP BY 1
---
SELECT extname, extversion FROM pg_extension
---
SELECT rolname FROM pg_roles WHERE pg_has_role(current_user, oid, 'member')
---
SELECT sum(heap_blks_hit) / nullif(sum(heap_blks_hit) + sum(heap_blks_read), 0) AS ratio FROM pg_statio_user_tables
---
SELECT now() - pg_last_xact_replay_timestamp() AS replication_delay
---
SELECT *
FROM   films  -- a comment
WHERE  kind = 'Drama' /* another
comment */
---
SELECT 'it''s', E'\\n', $$dollar; quoted$$, $tag$nested $$ inside$tag$
---
SELECT "select", "from" FROM "where" WHERE "update" = 1
---
WITH regional_sales AS (SELECT region, SUM(amount) AS total_sales FROM orders GROUP BY region), top_regions AS (SELECT region FROM regional_sales WHERE total_sales > (SELECT SUM(total_sales)/10 FROM regional_sales)) SELECT region, product, SUM(quantity) AS product_units, SUM(amount) AS product_sales FROM orders WHERE region IN (SELECT region FROM top_regions) GROUP BY region, product
---
WITH w AS MATERIALIZED (SELECT * FROM big_table) SELECT * FROM w AS w1 JOIN w AS w2 ON w1.key = w2.ref WHERE w2.key = 123
---
WITH RECURSIVE search_tree(id, link, data) AS (SELECT t.id, t.link, t.data FROM tree t UNION ALL SELECT t.id, t.link, t.data FROM tree t, search_tree st WHERE t.id = st.link) SEARCH DEPTH FIRST BY id SET ordercol SELECT * FROM search_tree ORDER BY ordercol
---
SELECT xmlelement(name foo, xmlattributes('xyz' as bar), 'cont')
---
SELECT * FROM xmltable('//ROWS/ROW' PASSING data COLUMNS id int PATH '@id', name text PATH 'NAME') AS t
---
SELECT json_object('a' VALUE 1), json_array(1, 2, 3)
---
SELECT id FROM t1 INTERSECT SELECT id FROM t2 EXCEPT SELECT id FROM t3
---
SELECT * FROM ONLY films
---
SELECT array[1,2,3] && array[2], int4range(1, 10) @> 5, '192.168.1.5'::inet << '192.168.1/24'::inet
---
SELECT x FROM t ORDER BY x USING >
---
SELECT * FROM films WHERE title SIMILAR TO '%(b|d)%' AND title IS DISTINCT FROM 'x'
---
SELECT lower(title) COLLATE "C" FROM films ORDER BY 1
---
SELECT * FROM films f1 NATURAL JOIN films f2 CROSS JOIN distributors
---
SELECT GREATEST(1, 2), LEAST(3, 4), NULLIF(a, b) FROM t
---
SELECT ROW(1, 'a') = ROW(1, 'a'), (SELECT max(id) FROM films)
---
SELECT interval '1 day' * 3, date '2024-01-01' + 1, timestamp '2024-01-01 00:00' AT TIME ZONE 'UTC'
---
COPY films TO STDOUT
---
COPY (SELECT title FROM films WHERE kind = 'Drama') TO STDOUT WITH (FORMAT csv, HEADER)
