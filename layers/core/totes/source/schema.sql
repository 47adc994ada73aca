-- The totesys operational schema, as Prisma manages it on the client's server.
-- Every table: serial primary key, created_at with a default, last_updated without one.
-- Foreign keys live in constraints.sql: bulk loads add them after the rows are in.
CREATE TYPE payment_type_name AS ENUM ('SALES_RECEIPT', 'SALES_REFUND', 'PURCHASE_PAYMENT', 'PURCHASE_REFUND');
CREATE TYPE transaction_type AS ENUM ('SALE', 'PURCHASE');

CREATE TABLE _prisma_migrations (
    id varchar(36) PRIMARY KEY,
    checksum varchar(64) NOT NULL,
    finished_at timestamptz,
    migration_name varchar(255) NOT NULL,
    logs text,
    rolled_back_at timestamptz,
    started_at timestamptz NOT NULL DEFAULT now(),
    applied_steps_count integer NOT NULL DEFAULT 0
);

CREATE TABLE address (
    address_id serial PRIMARY KEY,
    address_line_1 text NOT NULL,
    address_line_2 text,
    district text,
    city text NOT NULL,
    postal_code text NOT NULL,
    country text NOT NULL,
    phone text NOT NULL,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);

CREATE TABLE counterparty (
    counterparty_id serial PRIMARY KEY,
    counterparty_legal_name text NOT NULL,
    legal_address_id integer NOT NULL,
    commercial_contact text,
    delivery_contact text,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);

CREATE TABLE currency (
    currency_id serial PRIMARY KEY,
    currency_code varchar(3) NOT NULL,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);

CREATE TABLE department (
    department_id serial PRIMARY KEY,
    department_name text NOT NULL,
    location text,
    manager text,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);

CREATE TABLE design (
    design_id serial PRIMARY KEY,
    design_name text NOT NULL,
    file_location text NOT NULL,
    file_name text NOT NULL,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);

CREATE TABLE payment_type (
    payment_type_id serial PRIMARY KEY,
    payment_type_name payment_type_name NOT NULL,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);

CREATE TABLE staff (
    staff_id serial PRIMARY KEY,
    first_name text NOT NULL,
    last_name text NOT NULL,
    department_id integer NOT NULL,
    email_address text NOT NULL,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);

CREATE TABLE sales_order (
    sales_order_id serial PRIMARY KEY,
    design_id integer NOT NULL,
    staff_id integer NOT NULL,
    counterparty_id integer NOT NULL,
    units_sold integer NOT NULL,
    unit_price numeric(10, 2) NOT NULL,
    currency_id integer NOT NULL,
    agreed_delivery_date text NOT NULL,
    agreed_payment_date text NOT NULL,
    agreed_delivery_location_id integer NOT NULL,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);

CREATE TABLE purchase_order (
    purchase_order_id serial PRIMARY KEY,
    staff_id integer NOT NULL,
    counterparty_id integer NOT NULL,
    item_code text NOT NULL,
    item_quantity integer NOT NULL,
    item_unit_price numeric(10, 2) NOT NULL,
    currency_id integer NOT NULL,
    agreed_delivery_date text NOT NULL,
    agreed_payment_date text NOT NULL,
    agreed_delivery_location_id integer NOT NULL,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);

CREATE TABLE transaction (
    transaction_id serial PRIMARY KEY,
    transaction_type transaction_type NOT NULL,
    sales_order_id integer UNIQUE,
    purchase_order_id integer UNIQUE,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);

CREATE TABLE payment (
    payment_id serial PRIMARY KEY,
    transaction_id integer NOT NULL UNIQUE,
    counterparty_id integer NOT NULL,
    payment_amount numeric(10, 2) NOT NULL,
    currency_id integer NOT NULL,
    payment_type_id integer NOT NULL,
    paid boolean NOT NULL,
    payment_date text NOT NULL,
    company_ac_number integer NOT NULL,
    counterparty_ac_number integer NOT NULL,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_updated timestamp(3) NOT NULL
);
