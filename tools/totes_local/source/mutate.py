"""Apply realistic business changes to a totesys source.

The later stages are only proven by sources that move: new and amended orders,
a department relocating (which must cascade into dim_staff), an address getting
a new phone number (dim_location and dim_counterparty), new designs, renamed
staff, settled payments. Every changed or inserted row gets a ``last_updated``
later than any value already in the database, one millisecond apart per change,
so the changes have a clear order and every changed row strictly advances.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from totes.source.schema import require_source_schema
from totes.tables import SOURCE_TABLES
from totes_local.source.generator import DEPARTMENTS, FILE_LOCATIONS, MATERIALS

_ONE_MS = timedelta(milliseconds=1)
_CITIES = (
    *sorted({location for _, location, _ in DEPARTMENTS if location}),
    "Sheffield",
    "Liverpool",
    "York",
)
_NEW_SURNAMES = ("Hargreaves", "Lindqvist", "O'Connell", "Mbeki", "Sánchez", "Whitaker")


class _NothingToChangeError(Exception):
    """The drawn kind of change has no row to apply to (every payment is settled)."""


@dataclass
class MutationReport:
    """What :func:`mutate` changed: a count per kind of change, and every touched row."""

    kinds: Counter[str] = field(default_factory=Counter)
    #: (table, primary key) of every inserted or updated row.
    touched: list[tuple[str, int]] = field(default_factory=list)


class _Mutator:
    def __init__(self, conn: psycopg.Connection[Any], rng: random.Random, start: datetime) -> None:
        self.conn = conn
        self.rng = rng
        self.clock = start
        self.report = MutationReport()

    def tick(self) -> datetime:
        self.clock += _ONE_MS
        return self.clock

    def touched(self, table: str, key: int) -> None:
        self.report.touched.append((table, key))

    def random_id(self, table: str, where: str = "") -> int | None:
        # TABLESAMPLE would be faster on huge tables but is not reproducible for a seed.
        query = sql.SQL("SELECT {key} FROM {table} {where} ORDER BY {key} OFFSET %s LIMIT 1")
        count_query = sql.SQL("SELECT count(*) FROM {table} {where}")
        parts = {
            "key": sql.Identifier(f"{table}_id"),
            "table": sql.Identifier(table),
            "where": sql.SQL(where),
        }
        count_row = self.conn.execute(count_query.format(**parts)).fetchone()
        count = int(count_row[0]) if count_row else 0
        if count == 0:
            return None
        row = self.conn.execute(query.format(**parts), (self.rng.randrange(count),)).fetchone()
        return int(row[0]) if row else None

    def insert(self, query: str | sql.Composed, params: tuple[Any, ...]) -> int:
        """Run an INSERT ... RETURNING <id> and return the new id."""
        row = self.conn.execute(query, params).fetchone()
        if row is None:
            raise RuntimeError("INSERT ... RETURNING gave no row")
        return int(row[0])

    def pick(self, table: str) -> int:
        key = self.random_id(table)
        if key is None:
            raise ValueError(f"cannot mutate: table {table} is empty")
        return key

    def agreed_dates(self, placed: datetime) -> tuple[str, str]:
        delivery = (placed + timedelta(days=self.rng.uniform(0, 7))).date()
        payment = (placed + timedelta(days=self.rng.uniform(0, 6))).date()
        return delivery.isoformat(), payment.isoformat()

    # -- the kinds of change --------------------------------------------------------------

    def new_sales_order(self) -> None:
        now = self.tick()
        delivery, payment_date = self.agreed_dates(now)
        units = self.rng.randint(1_000, 100_000)
        price = Decimal(self.rng.randint(200, 400)).scaleb(-2)
        counterparty = self.pick("counterparty")
        currency = self.pick("currency")
        new_id = self.insert(
            "INSERT INTO sales_order (design_id, staff_id, counterparty_id, units_sold, "
            "unit_price, currency_id, agreed_delivery_date, agreed_payment_date, "
            "agreed_delivery_location_id, created_at, last_updated) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING sales_order_id",
            (
                self.pick("design"),
                self.pick("staff"),
                counterparty,
                units,
                price,
                currency,
                delivery,
                payment_date,
                self.pick("address"),
                now,
                now,
            ),
        )
        self.touched("sales_order", new_id)
        self._transaction_and_payment(
            now,
            "SALE",
            new_id,
            counterparty=counterparty,
            currency=currency,
            amount=units * price,
            payment_date=payment_date,
        )

    def new_purchase_order(self) -> None:
        now = self.tick()
        delivery, payment_date = self.agreed_dates(now)
        quantity = self.rng.randint(1, 999)
        price = Decimal(self.rng.randint(100, 99_999)).scaleb(-2)
        counterparty = self.pick("counterparty")
        currency = self.pick("currency")
        code = "".join(self.rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=7))
        new_id = self.insert(
            "INSERT INTO purchase_order (staff_id, counterparty_id, item_code, item_quantity, "
            "item_unit_price, currency_id, agreed_delivery_date, agreed_payment_date, "
            "agreed_delivery_location_id, created_at, last_updated) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING purchase_order_id",
            (
                self.pick("staff"),
                counterparty,
                code,
                quantity,
                price,
                currency,
                delivery,
                payment_date,
                self.pick("address"),
                now,
                now,
            ),
        )
        self.touched("purchase_order", new_id)
        self._transaction_and_payment(
            now,
            "PURCHASE",
            new_id,
            counterparty=counterparty,
            currency=currency,
            amount=quantity * price,
            payment_date=payment_date,
        )

    def _transaction_and_payment(
        self,
        now: datetime,
        kind: str,
        order_id: int,
        *,
        counterparty: int,
        currency: int,
        amount: Decimal,
        payment_date: str,
    ) -> None:
        order_column = "sales_order_id" if kind == "SALE" else "purchase_order_id"
        new_id = self.insert(
            sql.SQL(
                "INSERT INTO transaction (transaction_type, {}, created_at, last_updated) "
                "VALUES (%s, %s, %s, %s) RETURNING transaction_id"
            ).format(sql.Identifier(order_column)),
            (kind, order_id, now, now),
        )
        transaction_id = new_id
        self.touched("transaction", transaction_id)
        payment_type = 1 if kind == "SALE" else 3
        new_id = self.insert(
            "INSERT INTO payment (transaction_id, counterparty_id, payment_amount, currency_id, "
            "payment_type_id, paid, payment_date, company_ac_number, counterparty_ac_number, "
            "created_at, last_updated) "
            "VALUES (%s, %s, %s, %s, %s, false, %s, %s, %s, %s, %s) RETURNING payment_id",
            (
                transaction_id,
                counterparty,
                amount,
                currency,
                payment_type,
                payment_date,
                self.rng.randint(10_000_000, 99_999_999),
                self.rng.randint(10_000_000, 99_999_999),
                now,
                now,
            ),
        )
        self.touched("payment", new_id)

    def amend_sales_order(self) -> None:
        order = self.pick("sales_order")
        now = self.tick()
        delivery, _ = self.agreed_dates(now)
        self.conn.execute(
            "UPDATE sales_order SET units_sold = %s, agreed_delivery_date = %s, last_updated = %s "
            "WHERE sales_order_id = %s",
            (self.rng.randint(1_000, 100_000), delivery, now, order),
        )
        self.touched("sales_order", order)

    def amend_purchase_order(self) -> None:
        order = self.pick("purchase_order")
        now = self.tick()
        self.conn.execute(
            "UPDATE purchase_order SET item_quantity = %s, last_updated = %s "
            "WHERE purchase_order_id = %s",
            (self.rng.randint(1, 999), now, order),
        )
        self.touched("purchase_order", order)

    def settle_payment(self) -> None:
        payment = self.random_id("payment", "WHERE NOT paid")
        if payment is None:
            raise _NothingToChangeError
        self.conn.execute(
            "UPDATE payment SET paid = true, last_updated = %s WHERE payment_id = %s",
            (self.tick(), payment),
        )
        self.touched("payment", payment)

    def move_department(self) -> None:
        department = self.pick("department")
        row = self.conn.execute(
            "SELECT location FROM department WHERE department_id = %s", (department,)
        ).fetchone()
        current = row[0] if row else None
        new_city = self.rng.choice([city for city in _CITIES if city != current])
        self.conn.execute(
            "UPDATE department SET location = %s, last_updated = %s WHERE department_id = %s",
            (new_city, self.tick(), department),
        )
        self.touched("department", department)

    def change_address_phone(self) -> None:
        address = self.pick("address")
        phone = f"{self.rng.randint(0, 9999):04d} {self.rng.randint(0, 999_999):06d}"
        self.conn.execute(
            "UPDATE address SET phone = %s, last_updated = %s WHERE address_id = %s",
            (phone, self.tick(), address),
        )
        self.touched("address", address)

    def new_design(self) -> None:
        now = self.tick()
        material = self.rng.choice(MATERIALS)
        token = "".join(self.rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=4))
        new_id = self.insert(
            "INSERT INTO design (design_name, file_location, file_name, created_at, last_updated) "
            "VALUES (%s, %s, %s, %s, %s) RETURNING design_id",
            (
                material,
                self.rng.choice(FILE_LOCATIONS),
                f"{material.lower()}-{now:%Y%m%d}-{token}.json",
                now,
                now,
            ),
        )
        self.touched("design", new_id)

    def rename_staff(self) -> None:
        staff = self.pick("staff")
        row = self.conn.execute(
            "SELECT first_name FROM staff WHERE staff_id = %s", (staff,)
        ).fetchone()
        first_name = row[0] if row else "Alex"
        last_name = self.rng.choice(_NEW_SURNAMES)
        self.conn.execute(
            "UPDATE staff SET last_name = %s, email_address = %s, last_updated = %s "
            "WHERE staff_id = %s",
            (
                last_name,
                f"{first_name}.{last_name}@terrifictotes.com".lower().replace(" ", ""),
                self.tick(),
                staff,
            ),
        )
        self.touched("staff", staff)


#: Kind of change -> relative frequency, roughly the client's weekly mix.
CHANGE_WEIGHTS: dict[str, int] = {
    "new_sales_order": 35,
    "amend_sales_order": 20,
    "new_purchase_order": 12,
    "amend_purchase_order": 5,
    "settle_payment": 10,
    "move_department": 3,
    "change_address_phone": 5,
    "new_design": 5,
    "rename_staff": 5,
}


def _latest_change(conn: psycopg.Connection[Any]) -> datetime:
    newest = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT max(last_updated) AS newest FROM {}").format(sql.Identifier(table))
        for table in SOURCE_TABLES
    )
    row = conn.execute(
        sql.SQL("SELECT greatest(localtimestamp(3), max(newest)) FROM ({}) AS per_table").format(
            newest
        )
    ).fetchone()
    if row is None:
        raise RuntimeError("max(last_updated) query gave no row")
    moment: datetime = row[0]
    return moment


def mutate(
    conn: psycopg.Connection[Any],
    *,
    seed: int,
    changes: int,
    on_change: Callable[[str], None] | None = None,
) -> MutationReport:
    """Apply ``changes`` random business changes in one transaction.

    Parameters
    ----------
    conn
        Connection to a seeded totesys source.
    seed
        Chooses the changes. The same seed makes the same kinds of change, in the same
        order, on any source (so runs on sources of different sizes compare like with
        like), but where a source has nothing for a kind (no unpaid payment to settle)
        and another is drawn in its place; on the same source it also picks the same
        rows and values.
    changes
        How many changes to apply (a new order with its transaction and payment is one).

    Raises
    ------
    SourceSchemaMissingError
        The database holds no totesys schema.

    Examples
    --------
    >>> with connect(dsn) as conn:  # doctest: +SKIP
    ...     report = mutate(conn, seed=1, changes=50)
    >>> sum(report.kinds.values())  # doctest: +SKIP
    50
    """
    if changes < 0:
        raise ValueError(f"changes must be zero or more, got {changes}")
    require_source_schema(conn)
    rng = random.Random(f"{seed}:mutate")
    # Drawn apart from the rows and values, whose draws depend on the tables' sizes.
    kind_rng = random.Random(f"{seed}:kinds")
    kinds = list(CHANGE_WEIGHTS)
    weights = list(CHANGE_WEIGHTS.values())
    with conn.transaction():
        mutator = _Mutator(conn, rng, _latest_change(conn))
        applied = 0
        while applied < changes:
            kind = kind_rng.choices(kinds, weights)[0]
            while True:
                try:
                    getattr(mutator, kind)()
                    break
                except _NothingToChangeError:
                    # Replaced from the rows' stream: the kinds after it stay the seed's.
                    kind = rng.choices(kinds, weights)[0]
            applied += 1
            mutator.report.kinds[kind] += 1
            if on_change:
                on_change(kind)
    return mutator.report
