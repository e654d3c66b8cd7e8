-- The demo's schema: fake customers whose rows carry what the gateway masks.
-- Every value here is made up; the card numbers are the networks' published
-- test numbers and the keys have the right shape but open nothing.

CREATE SCHEMA shop;

CREATE TABLE shop.customers (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    phone       text,
    card_number text,
    api_key     text,
    notes       text,
    created_at  timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00'
);

INSERT INTO shop.customers (id, name, email, phone, card_number, api_key, notes) VALUES
 (1, 'Ada Lovelace',    'ada@example.com',     '+44 20 7946 0958', '4111111111111111', 'pk_demo_4f9a2c1e8b7d6a5f4e3d2c1b', 'prefers email'),
 (2, 'Alan Turing',     'alan@example.org',    '+1 415 555 0142',  '5555555555554444', 'pk_demo_0a1b2c3d4e5f6a7b8c9d0e1f', 'asked to rotate AWS key AKIAZ7VRSQ5TJHCM3XPL after the incident'),
 (3, 'Grace Hopper',    'grace@example.net',   '+1 212 555 0199',  '378282246310005',  'pk_demo_9e8d7c6b5a4f3e2d1c0b9a8f', 'ops shared postgres://app:Sup3rS3cretPw@db.internal:5432/app in a ticket'),
 (4, 'Edsger Dijkstra', 'edsger@example.com',  '+31 20 555 0123',  '6011111111111117', 'pk_demo_1f2e3d4c5b6a7f8e9d0c1b2a', 'no notes'),
 (5, 'Barbara Liskov',  'barbara@example.edu', '+1 617 555 0177',  '4012888888881881', 'pk_demo_abcdef0123456789abcdef01', 'GitHub token ghp_R4nd0mLook1ngDemoT0kenValue012345678 pasted by mistake');

CREATE TABLE shop.orders (
    id          integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES shop.customers (id),
    amount      numeric(10, 2) NOT NULL,
    status      text NOT NULL
);

INSERT INTO shop.orders (id, customer_id, amount, status) VALUES
 (100, 1, 19.99, 'shipped'),
 (101, 2, 250.00, 'pending'),
 (102, 3, 5.50, 'shipped'),
 (103, 3, 99.00, 'refunded'),
 (104, 5, 42.00, 'pending');

-- The role the gateway logs in as: it may read and change the shop, and
-- nothing else. Not a superuser, so it cannot read pg_authid.
CREATE ROLE portcullis_gateway LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'gateway_password';
GRANT USAGE ON SCHEMA shop TO portcullis_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA shop TO portcullis_gateway;
ALTER ROLE portcullis_gateway SET search_path = shop, public;
