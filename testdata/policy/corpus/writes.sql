ALTER AGGREGATE myavg(integer) RENAME TO my_average
---
ALTER AGGREGATE myavg(integer) OWNER TO joe
---
ALTER AGGREGATE mypercentile(float8 ORDER BY integer) SET SCHEMA myschema
---
ALTER COLLATION "de_DE" RENAME TO german
---
ALTER COLLATION "en_US" REFRESH VERSION
---
ALTER CONVERSION iso_8859_1_to_utf8 RENAME TO latin1_to_unicode
---
ALTER DATABASE test RENAME TO mytest
---
ALTER DATABASE test SET enable_indexscan TO off
---
ALTER DATABASE test OWNER TO joe
---
ALTER DEFAULT PRIVILEGES IN SCHEMA myschema GRANT SELECT ON TABLES TO PUBLIC
---
ALTER DEFAULT PRIVILEGES IN SCHEMA myschema REVOKE INSERT ON TABLES FROM webuser
---
ALTER DOMAIN zipcode SET NOT NULL
---
ALTER DOMAIN zipcode ADD CONSTRAINT zipchk CHECK (char_length(VALUE) = 5)
---
ALTER DOMAIN zipcode SET SCHEMA customers
---
ALTER EVENT TRIGGER abort_ddl DISABLE
---
ALTER EXTENSION hstore UPDATE TO '2.0'
---
ALTER EXTENSION hstore SET SCHEMA utils
---
ALTER FOREIGN DATA WRAPPER dbi OPTIONS (ADD foo '1', DROP bar)
---
ALTER FOREIGN TABLE distributors ALTER COLUMN street SET NOT NULL
---
ALTER FOREIGN TABLE myschema.distributors OPTIONS (ADD opt1 'value', SET opt2 'value2', DROP opt3)
---
ALTER FUNCTION sqrt(integer) RENAME TO square_root
---
ALTER FUNCTION sqrt(integer) OWNER TO joe
---
ALTER FUNCTION check_password(text) SET search_path = admin, pg_temp
---
ALTER FUNCTION check_password(text) RESET search_path
---
ALTER GROUP staff ADD USER karl, john
---
ALTER GROUP workers DROP USER beth
---
ALTER INDEX distributors RENAME TO suppliers
---
ALTER INDEX distributors SET TABLESPACE fasttablespace
---
ALTER INDEX distributors SET (fillfactor = 75)
---
ALTER INDEX coord_idx ALTER COLUMN 3 SET STATISTICS 1000
---
ALTER LANGUAGE plpgsql OWNER TO joe
---
ALTER LARGE OBJECT 1234 OWNER TO joe
---
ALTER MATERIALIZED VIEW foo RENAME TO bar
---
ALTER OPERATOR @@ (text, text) OWNER TO joe
---
ALTER OPERATOR && (int[], int[]) SET (RESTRICT = _int_contsel, JOIN = _int_contjoinsel)
---
ALTER OPERATOR CLASS widget_ops USING btree RENAME TO gadget_ops
---
ALTER OPERATOR FAMILY integer_ops USING btree ADD OPERATOR 1 < (int4, int2)
---
ALTER POLICY name ON table_name RENAME TO new_name
---
ALTER POLICY p1 ON accounts USING (manager = current_user)
---
ALTER PROCEDURE insert_data(integer, integer) RENAME TO insert_record
---
ALTER PROCEDURE insert_data(integer, integer) SET SCHEMA accounting
---
ALTER PUBLICATION noinsert SET (publish = 'update, delete')
---
ALTER PUBLICATION mypublication ADD TABLE users (user_id, firstname), departments
---
ALTER ROLE davide WITH PASSWORD 'hu8jmn3'
---
ALTER ROLE davide WITH PASSWORD NULL
---
ALTER ROLE chris VALID UNTIL 'May 4 12:00:00 2015 +1'
---
ALTER ROLE miriam CREATEROLE CREATEDB
---
ALTER ROLE worker_bee SET maintenance_work_mem = 100000
---
ALTER ROLE fred IN DATABASE devel SET client_min_messages = DEBUG
---
ALTER ROUTINE foo(integer) RENAME TO foobar
---
ALTER RULE notify_all ON emp RENAME TO notify_me
---
ALTER SCHEMA oldname RENAME TO newname
---
ALTER SCHEMA sales OWNER TO joe
---
ALTER SEQUENCE serial RESTART WITH 105
---
ALTER SEQUENCE serial OWNED BY films.id
---
ALTER SERVER foo OPTIONS (host 'foo', dbname 'foodb')
---
ALTER SERVER foo VERSION '8.4' OPTIONS (SET host 'baz')
---
ALTER STATISTICS s1 SET STATISTICS 1000
---
ALTER SUBSCRIPTION mysub SET PUBLICATION insert_only
---
ALTER SUBSCRIPTION mysub DISABLE
---
ALTER SYSTEM SET wal_level = replica
---
ALTER SYSTEM RESET wal_level
---
ALTER SYSTEM SET archive_command = 'cp %p /tmp/x'
---
ALTER TABLE distributors ADD COLUMN address varchar(30)
---
ALTER TABLE measurements ADD COLUMN mtime timestamp with time zone DEFAULT now()
---
ALTER TABLE transactions ADD COLUMN status varchar(30) DEFAULT 'old', ALTER COLUMN status SET default 'current'
---
ALTER TABLE distributors DROP COLUMN address RESTRICT
---
ALTER TABLE distributors ALTER COLUMN address TYPE varchar(80), ALTER COLUMN name TYPE varchar(100)
---
ALTER TABLE foo ALTER COLUMN foo_timestamp SET DATA TYPE timestamp with time zone USING timestamp with time zone 'epoch' + foo_timestamp * interval '1 second'
---
ALTER TABLE distributors RENAME COLUMN address TO city
---
ALTER TABLE distributors RENAME TO suppliers
---
ALTER TABLE distributors RENAME CONSTRAINT zipchk TO zip_check
---
ALTER TABLE distributors ALTER COLUMN street SET NOT NULL
---
ALTER TABLE distributors ADD CONSTRAINT zipchk CHECK (char_length(zipcode) = 5)
---
ALTER TABLE distributors ADD CONSTRAINT zipchk CHECK (char_length(zipcode) = 5) NO INHERIT
---
ALTER TABLE distributors DROP CONSTRAINT zipchk
---
ALTER TABLE ONLY distributors DROP CONSTRAINT zipchk
---
ALTER TABLE distributors ADD CONSTRAINT distfk FOREIGN KEY (address) REFERENCES addresses (address)
---
ALTER TABLE distributors ADD CONSTRAINT distfk FOREIGN KEY (address) REFERENCES addresses (address) NOT VALID
---
ALTER TABLE distributors VALIDATE CONSTRAINT distfk
---
ALTER TABLE distributors ADD CONSTRAINT dist_id_zipcode_key UNIQUE (dist_id, zipcode)
---
ALTER TABLE distributors ADD PRIMARY KEY (dist_id)
---
ALTER TABLE distributors SET TABLESPACE fasttablespace
---
ALTER TABLE myschema.distributors SET SCHEMA yourschema
---
ALTER TABLE distributors DROP CONSTRAINT distributors_pkey, ADD CONSTRAINT distributors_pkey PRIMARY KEY USING INDEX dist_id_temp_idx
---
ALTER TABLE measurement ATTACH PARTITION measurement_y2016m07 FOR VALUES FROM ('2016-07-01') TO ('2016-08-01')
---
ALTER TABLE cities ATTACH PARTITION cities_ab FOR VALUES IN ('a', 'b')
---
ALTER TABLE orders ATTACH PARTITION orders_p4 FOR VALUES WITH (MODULUS 4, REMAINDER 3)
---
ALTER TABLE measurement DETACH PARTITION measurement_y2015m12
---
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY
---
ALTER TABLE accounts DISABLE TRIGGER ALL
---
ALTER TABLE accounts OWNER TO mallory
---
ALTER TABLE users ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY
---
ALTER TABLESPACE index_space RENAME TO fast_raid
---
ALTER TABLESPACE index_space OWNER TO mary
---
ALTER TEXT SEARCH CONFIGURATION my_config ALTER MAPPING REPLACE english WITH swedish
---
ALTER TEXT SEARCH DICTIONARY my_dict ( StopWords = newrussian )
---
ALTER TEXT SEARCH PARSER my_parser RENAME TO other_parser
---
ALTER TEXT SEARCH TEMPLATE my_template RENAME TO other_template
---
ALTER TRIGGER emp_stamp ON emp RENAME TO emp_track_chgs
---
ALTER TRIGGER emp_stamp ON emp DEPENDS ON EXTENSION emplib
---
ALTER TYPE electronic_mail RENAME TO email
---
ALTER TYPE email OWNER TO joe
---
ALTER TYPE compfoo ADD ATTRIBUTE f3 int
---
ALTER TYPE colors ADD VALUE 'orange' AFTER 'red'
---
ALTER TYPE colors RENAME VALUE 'purple' TO 'mauve'
---
ALTER USER MAPPING FOR bob SERVER foo OPTIONS (SET password 'public')
---
ALTER USER bob WITH SUPERUSER
---
ALTER VIEW foo RENAME TO bar
---
ALTER VIEW a_view ALTER COLUMN ts SET DEFAULT now()
---
ANALYZE users
---
ANALYZE VERBOSE users (id, name)
---
ANALYZE
---
CALL do_db_maintenance()
---
CALL insert_data(1, 2)
---
CHECKPOINT
---
CLUSTER employees USING employees_ind
---
CLUSTER employees
---
CLUSTER
---
COMMENT ON TABLE mytable IS 'This is my table.'
---
COMMENT ON TABLE mytable IS NULL
---
COMMENT ON COLUMN my_table.my_column IS 'Employee ID number'
---
COMMENT ON FUNCTION my_function (timestamp) IS 'Returns Roman Numeral'
---
COMMENT ON ROLE my_role IS 'Administration group for finance tables'
---
COMMENT ON EXTENSION hstore IS 'implements the hstore data type'
---
COMMENT ON TEXT SEARCH CONFIGURATION my_config IS 'Special word filtering'
---
COMMENT ON OPERATOR ^ (text, text) IS 'Performs intersection of two texts'
---
COMMENT ON TRIGGER my_trigger ON my_table IS 'Used for RI'
---
COMMIT PREPARED 'foobar'
---
COPY country FROM '/usr1/proj/bray/sql/country_data'
---
COPY country TO '/usr1/proj/bray/sql/country_data'
---
COPY (SELECT * FROM country WHERE country_name LIKE 'A%') TO '/usr1/proj/bray/sql/a_list_countries.copy'
---
COPY country TO PROGRAM 'gzip > /usr1/proj/bray/sql/country_data.gz'
---
COPY country FROM PROGRAM 'curl http://example.com/x.csv'
---
COPY country FROM STDIN
---
COPY public.users (id, email, name) FROM stdin
---
COPY films FROM STDIN WITH (FORMAT csv, HEADER true, FREEZE true)
---
CREATE ACCESS METHOD heptree TYPE INDEX HANDLER heptree_handler
---
CREATE AGGREGATE sum (complex) (sfunc = complex_add, stype = complex, initcond = '(0,0)')
---
CREATE AGGREGATE avg (float8) (sfunc = float8_accum, stype = float8[], finalfunc = float8_avg, initcond = '{0,0,0}')
---
CREATE CAST (bigint AS int4) WITH FUNCTION int4(bigint) AS ASSIGNMENT
---
CREATE COLLATION french (locale = 'fr_FR.utf8')
---
CREATE COLLATION german_phonebook (provider = icu, locale = 'de-u-co-phonebk')
---
CREATE COLLATION german FROM "de_DE"
---
CREATE CONVERSION myconv FOR 'UTF8' TO 'LATIN1' FROM myfunc
---
CREATE DATABASE lusiadas
---
CREATE DATABASE sales OWNER salesapp TABLESPACE salesspace
---
CREATE DATABASE music LOCALE 'sv_SE.utf8' TEMPLATE template0
---
CREATE DOMAIN us_postal_code AS TEXT CHECK (VALUE ~ '^\d{5}$' OR VALUE ~ '^\d{5}-\d{4}$')
---
CREATE EVENT TRIGGER abort_ddl ON ddl_command_start EXECUTE FUNCTION abort_any_command()
---
CREATE EXTENSION hstore
---
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public
---
CREATE FOREIGN DATA WRAPPER dummy
---
CREATE FOREIGN DATA WRAPPER mywrapper OPTIONS (debug 'true')
---
CREATE FOREIGN TABLE films (code char(5) NOT NULL, title varchar(40) NOT NULL) SERVER film_server
---
CREATE FOREIGN TABLE measurement_y2016m07 PARTITION OF measurement FOR VALUES FROM ('2016-07-01') TO ('2016-08-01') SERVER server_07
---
CREATE FUNCTION add(integer, integer) RETURNS integer AS 'select $1 + $2;' LANGUAGE SQL IMMUTABLE RETURNS NULL ON NULL INPUT
---
CREATE FUNCTION add(a integer, b integer) RETURNS integer LANGUAGE SQL IMMUTABLE RETURNS NULL ON NULL INPUT RETURN a + b
---
CREATE OR REPLACE FUNCTION increment(i integer) RETURNS integer AS $$
        BEGIN
                RETURN i + 1;
        END;
$$ LANGUAGE plpgsql
---
CREATE FUNCTION dup(in int, out f1 int, out f2 text) AS $$ SELECT $1, CAST($1 AS text) || ' is text' $$ LANGUAGE SQL
---
CREATE FUNCTION check_password(uname TEXT, pass TEXT) RETURNS BOOLEAN AS $$
DECLARE passed BOOLEAN;
BEGIN
        SELECT  (pwd = $2) INTO passed FROM    pwds WHERE   username = $1;
        RETURN passed;
END;
$$  LANGUAGE plpgsql SECURITY DEFINER SET search_path = admin, pg_temp
---
CREATE FUNCTION insert_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO log VALUES (NEW.id); RETURN NEW; END $$
---
CREATE FUNCTION one() RETURNS integer LANGUAGE SQL BEGIN ATOMIC SELECT 1; END
---
CREATE GROUP staff
---
CREATE INDEX ON films ((lower(title)))
---
CREATE UNIQUE INDEX title_idx ON films (title)
---
CREATE UNIQUE INDEX title_idx ON films (title) INCLUDE (director, rating)
---
CREATE INDEX title_idx ON films (title) WITH (deduplicate_items = off)
---
CREATE INDEX code_idx ON films (code) TABLESPACE indexspace
---
CREATE INDEX pointloc ON points USING gist (box(location,location))
---
CREATE INDEX CONCURRENTLY sales_quantity_index ON sales_table (quantity)
---
CREATE INDEX gin_idx ON documents_table USING GIN (locations) WITH (fastupdate = off)
---
CREATE INDEX IF NOT EXISTS index_users_on_email ON public.users USING btree (email)
---
CREATE LANGUAGE plsample HANDLER plsample_call_handler
---
CREATE MATERIALIZED VIEW sales_summary AS SELECT seller_no, invoice_date, sum(invoice_amt)::numeric(13,2) as sales_amt FROM invoice WHERE invoice_date < CURRENT_DATE GROUP BY seller_no, invoice_date
---
CREATE OPERATOR === (LEFTARG = box, RIGHTARG = box, FUNCTION = area_equal_function, COMMUTATOR = ===, NEGATOR = !==, RESTRICT = area_restriction_function, JOIN = area_join_function, HASHES, MERGES)
---
CREATE OPERATOR CLASS gist__int_ops DEFAULT FOR TYPE _int4 USING gist AS OPERATOR 3 &&, FUNCTION 1 g_int_consistent (internal, _int4, smallint, oid, internal)
---
CREATE OPERATOR FAMILY integer_ops USING btree
---
CREATE POLICY fp_s ON information FOR SELECT USING (group_id <= (SELECT group_id FROM users WHERE user_name = current_user))
---
CREATE POLICY account_managers ON accounts TO managers USING (manager = current_user)
---
CREATE PROCEDURE insert_data(a integer, b integer) LANGUAGE SQL AS $$ INSERT INTO tbl VALUES (a); INSERT INTO tbl VALUES (b); $$
---
CREATE PUBLICATION mypublication FOR TABLE users, departments
---
CREATE PUBLICATION alltables FOR ALL TABLES
---
CREATE PUBLICATION sales_publication FOR TABLES IN SCHEMA marketing, sales
---
CREATE ROLE jonathan LOGIN
---
CREATE ROLE admin WITH CREATEDB CREATEROLE
---
CREATE USER davide WITH PASSWORD 'jw8s0F4'
---
CREATE ROLE miriam WITH LOGIN PASSWORD 'jw8s0F4' VALID UNTIL '2005-01-01'
---
CREATE RULE notify_me AS ON UPDATE TO mytable DO ALSO NOTIFY mytable
---
CREATE RULE "_RETURN" AS ON SELECT TO t1 DO INSTEAD SELECT * FROM t2
---
CREATE SCHEMA myschema
---
CREATE SCHEMA AUTHORIZATION joe
---
CREATE SCHEMA IF NOT EXISTS test AUTHORIZATION joe
---
CREATE SCHEMA hollywood CREATE TABLE films (title text, release date, awards text[]) CREATE VIEW winners AS SELECT title, release FROM films WHERE awards IS NOT NULL
---
CREATE SEQUENCE serial START 101
---
CREATE SEQUENCE IF NOT EXISTS public.users_id_seq AS bigint START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1
---
CREATE SERVER myserver FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'foo', dbname 'foodb', port '5432')
---
CREATE STATISTICS s1 (dependencies) ON a, b FROM t1
---
CREATE STATISTICS s2 (mcv) ON a, b FROM t2
---
CREATE STATISTICS s3 (ndistinct) ON date_trunc('month', a), date_trunc('day', a) FROM t3
---
CREATE SUBSCRIPTION mysub CONNECTION 'host=192.168.1.50 port=5432 user=foo dbname=foodb' PUBLICATION mypublication, insert_only
---
CREATE TABLE films (code char(5) CONSTRAINT firstkey PRIMARY KEY, title varchar(40) NOT NULL, did integer NOT NULL, date_prod date, kind varchar(10), len interval hour to minute)
---
CREATE TABLE distributors (did integer PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, name varchar(40) NOT NULL CHECK (name <> ''))
---
CREATE TABLE array_int (vector int[][])
---
CREATE TABLE films (code char(5), title varchar(40), did integer, date_prod date, kind varchar(10), len interval hour to minute, CONSTRAINT code_title UNIQUE(code,title))
---
CREATE TABLE distributors (did integer, name varchar(40), PRIMARY KEY(did))
---
CREATE TABLE distributors (name varchar(40) DEFAULT 'Luso Films', did integer DEFAULT nextval('distributors_serial'), modtime timestamp DEFAULT current_timestamp)
---
CREATE TABLE cinemas (id serial, name text, location text) TABLESPACE diskvol1
---
CREATE TYPE employee_type AS (name text, salary numeric)
---
CREATE TABLE employees OF employee_type (PRIMARY KEY (name), salary WITH OPTIONS DEFAULT 1000)
---
CREATE TABLE measurement (logdate date not null, peaktemp int, unitsales int) PARTITION BY RANGE (logdate)
---
CREATE TABLE measurement_year_month (logdate date not null, peaktemp int, unitsales int) PARTITION BY RANGE (EXTRACT(YEAR FROM logdate), EXTRACT(MONTH FROM logdate))
---
CREATE TABLE cities (city_id bigserial not null, name text not null, population bigint) PARTITION BY LIST (left(lower(name), 1))
---
CREATE TABLE orders (order_id bigint not null, cust_id bigint not null, status text) PARTITION BY HASH (order_id)
---
CREATE TABLE measurement_y2016m07 PARTITION OF measurement (unitsales DEFAULT 0) FOR VALUES FROM ('2016-07-01') TO ('2016-08-01')
---
CREATE TABLE cities_ab PARTITION OF cities (CONSTRAINT city_id_nonzero CHECK (city_id != 0)) FOR VALUES IN ('a', 'b')
---
CREATE TABLE orders_p1 PARTITION OF orders FOR VALUES WITH (MODULUS 4, REMAINDER 0)
---
CREATE TABLE cities_partdef PARTITION OF cities DEFAULT
---
CREATE TEMP TABLE tmp_ids (id bigint) ON COMMIT DROP
---
CREATE UNLOGGED TABLE staging (payload jsonb)
---
CREATE TABLE films_recent AS SELECT * FROM films WHERE date_prod >= '2002-01-01'
---
CREATE TABLE films2 AS TABLE films
---
CREATE TEMP TABLE films_recent ON COMMIT DROP AS EXECUTE recentfilms('2002-01-01')
---
CREATE TABLESPACE dbspace LOCATION '/data/dbs'
---
CREATE TABLESPACE indexspace OWNER genevieve LOCATION '/data/indexes'
---
CREATE TEXT SEARCH CONFIGURATION my_config ( COPY = english )
---
CREATE TEXT SEARCH DICTIONARY my_russian ( template = snowball, language = russian, stopwords = myrussian )
---
CREATE TEXT SEARCH PARSER my_parser (START = prsd_start, GETTOKEN = prsd_nexttoken, END = prsd_end, LEXTYPES = prsd_lextype)
---
CREATE TEXT SEARCH TEMPLATE my_template (LEXIZE = dsimple_lexize)
---
CREATE TRANSFORM FOR hstore LANGUAGE plpython3u (FROM SQL WITH FUNCTION hstore_to_plpython(internal), TO SQL WITH FUNCTION plpython_to_hstore(internal))
---
CREATE TRIGGER check_update BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION check_account_update()
---
CREATE OR REPLACE TRIGGER check_update BEFORE UPDATE OF balance ON accounts FOR EACH ROW EXECUTE FUNCTION check_account_update()
---
CREATE TRIGGER check_update BEFORE UPDATE ON accounts FOR EACH ROW WHEN (OLD.balance IS DISTINCT FROM NEW.balance) EXECUTE FUNCTION check_account_update()
---
CREATE TRIGGER log_update AFTER UPDATE ON accounts FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION log_account_update()
---
CREATE TRIGGER transfer_insert AFTER INSERT ON transfer REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION check_transfer_balances_to_zero()
---
CREATE CONSTRAINT TRIGGER check_fk AFTER INSERT ON orders DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_fk()
---
CREATE TYPE compfoo AS (f1 int, f2 text)
---
CREATE TYPE bug_status AS ENUM ('new', 'open', 'closed')
---
CREATE TYPE float8_range AS RANGE (subtype = float8, subtype_diff = float8mi)
---
CREATE TYPE box (INTERNALLENGTH = 16, INPUT = my_box_in_function, OUTPUT = my_box_out_function)
---
CREATE TYPE bigobj
---
CREATE USER MAPPING FOR bob SERVER foo OPTIONS (user 'bob', password 'secret')
---
CREATE VIEW vista AS SELECT 'Hello World'
---
CREATE VIEW comedies AS SELECT * FROM films WHERE kind = 'Comedy'
---
CREATE VIEW universal_comedies AS SELECT * FROM comedies WHERE classification = 'U' WITH LOCAL CHECK OPTION
---
CREATE RECURSIVE VIEW public.nums_1_100 (n) AS VALUES (1) UNION ALL SELECT n+1 FROM nums_1_100 WHERE n < 100
---
CREATE OR REPLACE VIEW active_users AS SELECT id, email FROM users WHERE deleted_at IS NULL
---
DECLARE liahona CURSOR FOR SELECT * FROM films FOR UPDATE
---
DECLARE c CURSOR FOR SELECT nextval('serial')
---
DELETE FROM films USING producers WHERE producer_id = producers.id AND producers.name = 'foo'
---
DELETE FROM films WHERE producer_id IN (SELECT id FROM producers WHERE name = 'foo')
---
DELETE FROM films WHERE kind <> 'Musical'
---
DELETE FROM films
---
DELETE FROM tasks WHERE status = 'DONE' RETURNING *
---
DELETE FROM tasks WHERE CURRENT OF c_tasks
---
DELETE FROM user_logs AS dl USING (SELECT ctid FROM user_logs WHERE status = 'archived' LIMIT 10000) AS del WHERE dl.ctid = del.ctid
---
DISCARD ALL
---
DISCARD TEMP
---
DISCARD SEQUENCES
---
DO $$DECLARE r record;
BEGIN
    FOR r IN SELECT table_schema, table_name FROM information_schema.tables
             WHERE table_type = 'VIEW' AND table_schema = 'public'
    LOOP
        EXECUTE 'GRANT ALL ON ' || quote_ident(r.table_schema) || '.' || quote_ident(r.table_name) || ' TO webuser';
    END LOOP;
END$$
---
DO LANGUAGE plpgsql $$ BEGIN PERFORM 1; END $$
---
DROP ACCESS METHOD heptree
---
DROP AGGREGATE myavg(integer)
---
DROP AGGREGATE myavg(integer), myavg(bigint)
---
DROP CAST (text AS int)
---
DROP COLLATION german
---
DROP CONVERSION myname
---
DROP DATABASE music
---
DROP DATABASE IF EXISTS music WITH (FORCE)
---
DROP DOMAIN box
---
DROP EVENT TRIGGER snitch
---
DROP EXTENSION hstore
---
DROP FOREIGN DATA WRAPPER dbi
---
DROP FOREIGN TABLE films, distributors
---
DROP FUNCTION sqrt(integer)
---
DROP FUNCTION sqrt(integer), sqrt(bigint)
---
DROP FUNCTION update_employee_salaries
---
DROP GROUP staff
---
DROP INDEX title_idx
---
DROP INDEX CONCURRENTLY IF EXISTS title_idx
---
DROP LANGUAGE plsample
---
DROP MATERIALIZED VIEW order_summary
---
DROP OPERATOR ^ (integer, integer)
---
DROP OPERATOR ~ (none, bit)
---
DROP OPERATOR CLASS widget_ops USING btree
---
DROP OPERATOR FAMILY float_ops USING btree
---
DROP OWNED BY doomed_role
---
DROP POLICY p1 ON my_table
---
DROP PROCEDURE do_db_maintenance()
---
DROP PUBLICATION mypublication
---
DROP ROLE jonathan
---
DROP ROUTINE foo(integer)
---
DROP RULE newrule ON mytable
---
DROP SCHEMA mystuff CASCADE
---
DROP SEQUENCE serial
---
DROP SERVER IF EXISTS foo
---
DROP STATISTICS IF EXISTS accounting.users_uid_creation, public.grants_user_role
---
DROP SUBSCRIPTION mysub
---
DROP TABLE films, distributors
---
DROP TABLE IF EXISTS "public"."schema_migrations" CASCADE
---
DROP TABLESPACE mystuff
---
DROP TEXT SEARCH CONFIGURATION my_english
---
DROP TEXT SEARCH DICTIONARY english
---
DROP TEXT SEARCH PARSER my_parser
---
DROP TEXT SEARCH TEMPLATE thesaurus
---
DROP TRANSFORM FOR hstore LANGUAGE plpython3u
---
DROP TRIGGER if_dist_exists ON films
---
DROP TYPE box
---
DROP USER jonathan
---
DROP USER MAPPING IF EXISTS FOR bob SERVER foo
---
DROP VIEW kinds
---
EXECUTE fooplan(1, 'Hunter Valley', 't', 200.00)
---
EXECUTE usrrptplan(1, current_date)
---
EXPLAIN ANALYZE SELECT * FROM tenk1 WHERE unique1 < 100 AND unique2 > 9000 FOR UPDATE
---
EXPLAIN ANALYZE DELETE FROM users
---
EXPLAIN (ANALYZE, BUFFERS) UPDATE accounts SET balance = 0 WHERE id = 1
---
EXPLAIN (ANALYZE TRUE, FORMAT JSON) INSERT INTO t VALUES (1)
---
EXPLAIN ANALYZE SELECT set_config('role', 'postgres', false)
---
EXPLAIN ANALYZE EXECUTE query(100, 200)
---
EXPLAIN ANALYZE CREATE TABLE t2 AS SELECT 1
---
GRANT INSERT ON films TO PUBLIC
---
GRANT ALL PRIVILEGES ON kinds TO manuel
---
GRANT admins TO joe
---
GRANT SELECT ON ALL TABLES IN SCHEMA public TO readonly
---
GRANT USAGE ON SCHEMA app TO app_user
---
GRANT EXECUTE ON FUNCTION pg_read_file(text) TO agent
---
GRANT pg_read_server_files TO agent
---
IMPORT FOREIGN SCHEMA foreign_films FROM SERVER film_server INTO films
---
IMPORT FOREIGN SCHEMA foreign_films LIMIT TO (actors, directors) FROM SERVER film_server INTO films
---
INSERT INTO films VALUES ('UA502', 'Bananas', 105, '1971-07-13', 'Comedy', '82 minutes')
---
INSERT INTO films VALUES ('UA502', 'Bananas', 105, DEFAULT, 'Comedy', '82 minutes')
---
INSERT INTO films (code, title, did, date_prod, kind) VALUES ('T_601', 'Yojimbo', 106, DEFAULT, 'Drama')
---
INSERT INTO films DEFAULT VALUES
---
INSERT INTO films (code, title, did, date_prod, kind) VALUES ('B6717', 'Tampopo', 110, '1985-02-10', 'Comedy'), ('HG120', 'The Dinner Game', 140, DEFAULT, 'Comedy')
---
INSERT INTO films SELECT * FROM tmp_films WHERE date_prod < '2004-05-07'
---
INSERT INTO tictactoe (game, board[1:3][1:3]) VALUES (1, '{{" "," "," "},{" "," "," "},{" "," "," "}}')
---
INSERT INTO distributors (did, dname) VALUES (DEFAULT, 'XYZ Widgets') RETURNING did
---
WITH upd AS (UPDATE employees SET sales_count = sales_count + 1 WHERE id = (SELECT sales_person FROM accounts WHERE name = 'Acme Corporation') RETURNING *) INSERT INTO employees_log SELECT *, current_timestamp FROM upd
---
INSERT INTO distributors (did, dname) VALUES (5, 'Gizmo Transglobal'), (6, 'Associated Computing, Inc') ON CONFLICT (did) DO UPDATE SET dname = EXCLUDED.dname
---
INSERT INTO distributors (did, dname) VALUES (7, 'Redline GmbH') ON CONFLICT (did) DO NOTHING
---
INSERT INTO distributors AS d (did, dname) VALUES (8, 'Anvil Distribution') ON CONFLICT (did) DO UPDATE SET dname = EXCLUDED.dname || ' (formerly ' || d.dname || ')' WHERE d.zipcode <> '21201'
---
INSERT INTO distributors (did, dname) VALUES (9, 'Antwerp Design') ON CONFLICT ON CONSTRAINT distributors_pkey DO NOTHING
---
INSERT INTO "users" ("email", "created_at", "updated_at") VALUES ($1, $2, $3) RETURNING "id"
---
INSERT INTO "django_migrations" ("app", "name", "applied") VALUES ('auth', '0001_initial', '2024-01-01T00:00:00'::timestamp) RETURNING "django_migrations"."id"
---
INSERT INTO schema_migrations (version) VALUES ('20240101000000')
---
LISTEN virtual; NOTIFY virtual
---
LOAD 'auto_explain'
---
LOAD '$libdir/plugins/evil'
---
LOCK TABLE films IN SHARE MODE
---
LOCK TABLE films IN SHARE ROW EXCLUSIVE MODE
---
LOCK films
---
LOCK TABLE ONLY accounts, orders IN ACCESS EXCLUSIVE MODE NOWAIT
---
MERGE INTO customer_account ca USING recent_transactions t ON t.customer_id = ca.customer_id WHEN MATCHED THEN UPDATE SET balance = balance + transaction_value WHEN NOT MATCHED THEN INSERT (customer_id, balance) VALUES (t.customer_id, t.transaction_value)
---
MERGE INTO customer_account ca USING (SELECT customer_id, transaction_value FROM recent_transactions) AS t ON t.customer_id = ca.customer_id WHEN MATCHED THEN UPDATE SET balance = balance + transaction_value WHEN NOT MATCHED THEN INSERT (customer_id, balance) VALUES (t.customer_id, t.transaction_value)
---
MERGE INTO wines w USING wine_stock_changes s ON s.winename = w.winename WHEN NOT MATCHED AND s.stock_delta > 0 THEN INSERT VALUES(s.winename, s.stock_delta) WHEN MATCHED AND w.stock + s.stock_delta > 0 THEN UPDATE SET stock = w.stock + s.stock_delta WHEN MATCHED THEN DELETE
---
MERGE INTO wines w USING new_wine_list s ON s.winename = w.winename WHEN NOT MATCHED BY TARGET THEN INSERT VALUES(s.winename, s.stock) WHEN MATCHED AND w.stock != s.stock THEN UPDATE SET stock = s.stock WHEN NOT MATCHED BY SOURCE THEN DELETE
---
NOTIFY virtual
---
NOTIFY virtual, 'This is the payload'
---
SELECT pg_notify('virtual', 'payload')
---
PREPARE fooplan (int, text, bool, numeric) AS INSERT INTO foo VALUES($1, $2, $3, $4)
---
PREPARE upd AS UPDATE users SET admin = true WHERE id = $1
---
PREPARE TRANSACTION 'foobar'
---
REASSIGN OWNED BY old_role TO new_role
---
REFRESH MATERIALIZED VIEW order_summary
---
REFRESH MATERIALIZED VIEW CONCURRENTLY annual_statistics_basis WITH NO DATA
---
REINDEX INDEX my_index
---
REINDEX TABLE my_table
---
REINDEX DATABASE broken_db
---
REINDEX (VERBOSE) TABLE CONCURRENTLY my_broken_table
---
RESET search_path
---
RESET ALL
---
RESET ROLE
---
RESET SESSION AUTHORIZATION
---
REVOKE INSERT ON films FROM PUBLIC
---
REVOKE ALL PRIVILEGES ON kinds FROM manuel
---
REVOKE admins FROM joe
---
ROLLBACK PREPARED 'foobar'
---
SECURITY LABEL FOR selinux ON TABLE mytable IS 'system_u:object_r:sepgsql_table_t:s0'
---
SECURITY LABEL FOR selinux ON TABLE mytable IS NULL
---
SELECT * INTO films_recent FROM films WHERE date_prod >= '2002-01-01'
---
SELECT * INTO TEMP TABLE tmp_x FROM films
---
SELECT * FROM films FOR UPDATE
---
SELECT * FROM films WHERE id = 1 FOR UPDATE SKIP LOCKED
---
SELECT * FROM films FOR SHARE
---
SELECT * FROM films FOR NO KEY UPDATE
---
SELECT * FROM films FOR KEY SHARE
---
SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
---
SELECT set_config('search_path', 'evil', false)
---
SELECT set_config('role', 'postgres', false)
---
SELECT * FROM set_config('default_transaction_read_only', 'off', false)
---
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'
---
SELECT pg_cancel_backend(12345)
---
SELECT pg_reload_conf()
---
SELECT pg_rotate_logfile()
---
SELECT lo_import('/etc/passwd')
---
SELECT lo_export(16409, '/tmp/x')
---
SELECT lo_unlink(16409)
---
SELECT nextval('serial')
---
SELECT setval('serial', 42)
---
SELECT * FROM nextval('serial')
---
SELECT pg_advisory_lock(1)
---
SELECT pg_try_advisory_xact_lock(42)
---
SELECT dblink_exec('dbname=postgres', 'DROP TABLE users')
---
SELECT * FROM dblink('dbname=postgres', 'DELETE FROM users RETURNING id') AS t(id int)
---
SELECT pg_switch_wal()
---
SELECT pg_create_restore_point('x')
---
SELECT pg_create_logical_replication_slot('slot', 'pgoutput')
---
SELECT pg_drop_replication_slot('slot')
---
SELECT pg_stat_reset()
---
SELECT pg_logical_emit_message(true, 'p', 'x')
---
SELECT pg_promote()
---
SELECT pg_sleep(10)
---
SELECT my_delete_everything()
---
SELECT public.cleanup_old_rows(30)
---
SELECT * FROM users WHERE id = 1 AND audit_log_write(id)
---
SELECT query_to_xml('DELETE FROM users RETURNING 1', true, false, '')
---
SELECT 1 ### 2
---
SELECT a OPERATOR(myschema.===) b FROM t
---
WITH deleted AS (DELETE FROM sessions WHERE expires_at < now() RETURNING id) SELECT count(*) FROM deleted
---
WITH t AS (UPDATE products SET price = price * 1.05 RETURNING *) SELECT * FROM products
---
WITH moved_rows AS (DELETE FROM products WHERE "date" >= '2010-10-01' AND "date" < '2010-11-01' RETURNING *) INSERT INTO products_log SELECT * FROM moved_rows
---
WITH new_row AS (INSERT INTO t (x) VALUES (1) RETURNING *) SELECT * FROM new_row
---
SET search_path TO my_schema, public
---
SET ROLE paul
---
SET ROLE NONE
---
SET SESSION AUTHORIZATION 'paul'
---
SET standard_conforming_strings = off
---
SET default_transaction_read_only = off
---
SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE
---
SET TRANSACTION READ WRITE
---
SET session_replication_role = replica
---
START TRANSACTION READ WRITE
---
BEGIN READ WRITE
---
BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE
---
TRUNCATE bigtable, fattable
---
TRUNCATE bigtable, fattable RESTART IDENTITY
---
TRUNCATE othertable CASCADE
---
TRUNCATE TABLE ONLY "public"."ar_internal_metadata"
---
UPDATE films SET kind = 'Dramatic' WHERE kind = 'Drama'
---
UPDATE weather SET temp_lo = temp_lo+1, temp_hi = temp_lo+15, prcp = DEFAULT WHERE city = 'San Francisco' AND date = '2003-07-03'
---
UPDATE weather SET temp_lo = temp_lo+1, temp_hi = temp_lo+15, prcp = DEFAULT WHERE city = 'San Francisco' AND date = '2003-07-03' RETURNING temp_lo, temp_hi, prcp
---
UPDATE weather SET (temp_lo, temp_hi, prcp) = (temp_lo+1, temp_lo+15, DEFAULT) WHERE city = 'San Francisco' AND date = '2003-07-03'
---
UPDATE employees SET sales_count = sales_count + 1 FROM accounts WHERE accounts.name = 'Acme Corporation' AND employees.id = accounts.sales_person
---
UPDATE employees SET sales_count = sales_count + 1 WHERE id = (SELECT sales_person FROM accounts WHERE name = 'Acme Corporation')
---
UPDATE accounts SET (contact_first_name, contact_last_name) = (SELECT first_name, last_name FROM employees WHERE employees.id = accounts.sales_person)
---
UPDATE summary s SET (sum_x, sum_y, avg_x, avg_y) = (SELECT sum(x), sum(y), avg(x), avg(y) FROM data d WHERE d.group_id = s.group_id)
---
UPDATE wines SET stock = stock + 24 WHERE winename = 'Chateau Lafite 2003'
---
UPDATE employees SET last_active = now() WHERE CURRENT OF c_employees
---
UPDATE "users" SET "last_sign_in_at" = $1, "updated_at" = $2 WHERE "users"."id" = $3
---
UPDATE users SET admin = true WHERE id = id
---
UPDATE users SET admin = true WHERE 1 = 1
---
VACUUM (VERBOSE, ANALYZE) onek
---
VACUUM
---
VACUUM FULL users
---
VACUUM (PARALLEL 4, INDEX_CLEANUP OFF) big_table
---
SELECT pg_catalog.set_config('search_path', '', false)
---
SELECT pg_catalog.setval('public.users_id_seq', 42, true)
---
ALTER TABLE ONLY public.users ADD CONSTRAINT users_pkey PRIMARY KEY (id)
---
ALTER TABLE ONLY public.users ALTER COLUMN id SET DEFAULT nextval('public.users_id_seq'::regclass)
---
ALTER SEQUENCE public.users_id_seq OWNED BY public.users.id
---
ALTER TABLE public.users OWNER TO app
---
CREATE TABLE public.users (
    id bigint NOT NULL,
    email character varying(255) NOT NULL,
    created_at timestamp(6) without time zone NOT NULL
)
---
COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL procedural language'
---
SELECT pg_catalog.lo_create('16409')
---
SELECT pg_catalog.lo_open('16409', 131072)
---
SELECT pg_catalog.lowrite(0, '\x0001')
---
SELECT pg_catalog.lo_close(0)
---
CREATE TABLE IF NOT EXISTS "schema_migrations" ("version" character varying NOT NULL PRIMARY KEY)
---
CREATE TABLE "django_content_type" ("id" integer NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, "app_label" varchar(100) NOT NULL, "model" varchar(100) NOT NULL)
---
ALTER TABLE "auth_permission" ADD CONSTRAINT "auth_permission_content_type_id_2f476e4b_fk_django_co" FOREIGN KEY ("content_type_id") REFERENCES "django_content_type" ("id") DEFERRABLE INITIALLY DEFERRED
---
SET CONSTRAINTS "auth_permission_content_type_id_2f476e4b_fk_django_co" IMMEDIATE; ALTER TABLE "auth_permission" DROP CONSTRAINT "auth_permission_content_type_id_2f476e4b_fk_django_co"
---
create table "posts" ("id" serial primary key, "title" varchar(255), "created_at" timestamptz default CURRENT_TIMESTAMP)
---
alter table "posts" add column "user_id" integer references "users"("id") on delete cascade
---
CREATE INDEX "index_posts_on_user_id" ON "posts" ("user_id")
---
insert into "knex_migrations" ("batch", "migration_time", "name") values (1, '2024-01-01 00:00:00.000', '20240101_init.js')
---
INSERT INTO "_prisma_migrations" ("id","checksum","migration_name","started_at","applied_steps_count") VALUES ($1,$2,$3,now(),0)
---
UPDATE flyway_schema_history SET success = true WHERE installed_rank = 3
---
INSERT INTO public.databasechangeloglock (ID, LOCKED) VALUES (1, FALSE)
---
UPDATE public.databasechangeloglock SET LOCKED = TRUE, LOCKEDBY = 'host (10.0.0.1)', LOCKGRANTED = NOW() WHERE ID = 1 AND LOCKED = FALSE
---
select nextval ('hibernate_sequence')
---
insert into person (name, id) values (?, ?)
---
update person set name=? where id=?
---
delete from person where id=?
---
SELECT pg_advisory_lock(72707369)
---
SELECT pg_advisory_unlock(72707369)
---
DELETE FROM "sessions" WHERE "sessions"."updated_at" < '2024-01-01'
---
UPDATE "jobs" SET "locked_at" = now(), "locked_by" = 'worker.1' WHERE id = (SELECT id FROM "jobs" WHERE "locked_at" IS NULL ORDER BY priority LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *

---
SET app.tenant_id = '42'
---
SELECT set_config('app.tenant_id', '42', false)
