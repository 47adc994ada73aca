"""A deterministic generator of totesys data shaped like the client's database.

Scale 1 reproduces the real volumes of the 2024-11-14 snapshot (11,175 sales
orders over two years, ramping up over the first months) and its quirks at the
same rates: NULL ``address_line_2`` and ``district``, the "Leds" typo, postal
codes with leading zeros, commas and apostrophes in names, timestamps without a
fractional part. It adds what the snapshot lacks but the source allows:
non-ASCII names and a ``payment`` row for every transaction.

Rows stream into PostgreSQL through ``COPY`` in bounded chunks, so memory stays
flat at any scale. Every table draws from its own random stream seeded by
``(seed, table)``: the same seed gives the same rows, and the two order streams
can be replayed cheaply to derive transactions and payments.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg

from totes.db import copy_field, copy_lines, table_columns
from totes.source.schema import add_source_constraints, create_source_tables

#: Row counts of the real snapshot (DESIGN.md section 6); ``payment`` has one row per transaction.
REAL_VOLUMES: dict[str, int] = {
    "address": 30,
    "counterparty": 20,
    "currency": 3,
    "department": 8,
    "design": 472,
    "payment_type": 4,
    "staff": 20,
    "sales_order": 11_175,
    "purchase_order": 4_640,
}
#: Tables whose content does not grow with the business.
_FIXED_TABLES = frozenset({"currency", "department", "payment_type"})
#: Smallest useful size of the tables that scale, so tiny scales still join sensibly.
_MINIMUM_ROWS = {"address": 5, "counterparty": 3, "staff": 5, "design": 3}

#: The snapshot's timeline: reference data first, then two years of orders.
OPENING = datetime(2022, 11, 3, 14, 20, 49, 962_000)
_PEOPLE_LOADED = datetime(2022, 11, 3, 14, 20, 51, 563_000)
_FIRST_ORDER = datetime(2022, 11, 3, 14, 20, 52, 186_000)
LAST_ORDER = datetime(2024, 11, 14, 15, 34, 9, 845_000)
#: Orders ramp up linearly over the first weeks (45 in Nov 2022, ~400 a month by Jan 2023).
_RAMP_DAYS = 100.0

# Quirk rates measured on the snapshot.
ADDRESS_LINE_2_NULL_RATE = 20 / 30
DISTRICT_NULL_RATE = 14 / 30
POSTAL_CODE_LEADING_ZERO_RATE = 4 / 30
POSTAL_CODE_ZIP4_RATE = 17 / 30
LEGAL_NAME_WITH_COMMA_RATE = 9 / 20
LEGAL_NAME_WITH_DASH_RATE = 4 / 20
APOSTROPHE_SURNAME_RATE = 1 / 20
SALES_ORDER_WITHOUT_FRACTION_RATE = 23 / 11_175
PURCHASE_ORDER_WITHOUT_FRACTION_RATE = 7 / 4_640
LATE_DELIVERY_RATE = 65 / 11_175
DESIGNS_AT_OPENING_RATE = 10 / 472
#: Not in the snapshot, allowed by the source: names outside ASCII.
NON_ASCII_NAME_RATE = 1 / 20

DEPARTMENTS: tuple[tuple[str, str | None, str | None], ...] = (
    ("Sales", "Manchester", "Richard Roma"),
    ("Purchasing", "Manchester", "Naomi Lapaglia"),
    ("Production", "Leeds", "Chester Ming"),
    ("Dispatch", "Leds", "Mark Hanna"),
    ("Finance", "Manchester", "Jordan Belfort"),
    ("Facilities", "Manchester", "Shelley Levene"),
    ("Communications", "Leeds", "Ann Blake"),
    ("HR", "Leeds", "James Link"),
)
CURRENCIES = ("GBP", "USD", "EUR")
PAYMENT_TYPES = ("SALES_RECEIPT", "SALES_REFUND", "PURCHASE_PAYMENT", "PURCHASE_REFUND")
_SALES_RECEIPT, _SALES_REFUND, _PURCHASE_PAYMENT, _PURCHASE_REFUND = 1, 2, 3, 4
_REFUND_RATE = 0.04

_FIRST_NAMES = (
    "Alma",
    "Basil",
    "Carmen",
    "Dorian",
    "Edna",
    "Felix",
    "Greta",
    "Hollis",
    "Ines",
    "Jasper",
    "Kendra",
    "Lionel",
    "Maeve",
    "Nolan",
    "Opal",
    "Percy",
    "Quinn",
    "Rosalind",
    "Silas",
    "Tamsin",
    "Ulric",
    "Vera",
    "Wendell",
    "Xavia",
    "Yusuf",
    "Zelda",
    "Amos",
    "Beatrix",
    "Cyrus",
    "Delphine",
)
_NON_ASCII_FIRST_NAMES = ("Zoë", "José", "Björn", "Anaïs", "Łukasz", "Søren", "Chloé", "Dvořák")
_LAST_NAMES = (
    "Ashdown",
    "Birchall",
    "Corrigan",
    "Dunmore",
    "Ellery",
    "Fairbairn",
    "Gallow",
    "Hartigan",
    "Ivers",
    "Jessop",
    "Kingsley",
    "Lathom",
    "Merriman",
    "Northcott",
    "Oakes",
    "Pendry",
    "Quarles",
    "Rudge",
    "Stanier",
    "Thackery",
    "Underwood",
    "Vickers",
    "Whitlow",
    "Yardley",
)
_APOSTROPHE_LAST_NAMES = ("O'Keefe", "O'Hara", "D'Arcy", "O'Donnell")
_NON_ASCII_LAST_NAMES = ("Müller", "Ñúñez", "Østergaard", "Kowalčík")
_TITLES = ("", "", "", "", "Ms. ", "Mr. ", "Dr. ", "Mrs. ")
_SUFFIXES = ("", "", "", "", "", " III", " PhD", " DVM", " DDS", " Jr.")
_COMPANY_FORMS = (" Inc", " LLC", " Group", " and Sons", " Ltd")
_STREET_KINDS = (
    "Via",
    "Cliffs",
    "Fort",
    "Skyway",
    "Track",
    "Island",
    "Ways",
    "Common",
    "Garden",
    "Mission",
    "Expressway",
    "Dale",
    "Turnpike",
    "Freeway",
    "Extension",
    "Drives",
    "Glens",
    "Circles",
    "Landing",
    "Ridge",
    "Streets",
    "Spring",
    "Heights",
    "Lock",
    "Branch",
    "View",
    "Inlet",
)
_CITY_FORMS = ("{}ton", "New {}", "East {}", "{}burgh", "Lake {}", "{}ville", "West {}", "{}port")
_DISTRICTS = (
    "Buckinghamshire",
    "Bedfordshire",
    "Borders",
    "Berkshire",
    "Avon",
    "Cambridgeshire",
)
_COUNTRIES = (
    "United Kingdom",
    "Turkey",
    "San Marino",
    "Samoa",
    "Republic of Korea",
    "Zimbabwe",
    "Faroe Islands",
    "Australia",
    "Democratic People's Republic of Korea",
    "Japan",
    "Tajikistan",
    "Bouvet Island (Bouvetoya)",
    "Iraq",
    "Iceland",
    "Indonesia",
    "Kiribati",
    "Sierra Leone",
    "Bolivia",
    "Svalbard & Jan Mayen Islands",
    "Papua New Guinea",
    "Antigua and Barbuda",
    "Sudan",
    "American Samoa",
    "Guam",
    "Austria",
    "Congo",
    "Falkland Islands (Malvinas)",
    "Côte d'Ivoire",
)
MATERIALS = (
    "Bronze",
    "Concrete",
    "Cotton",
    "Fresh",
    "Frozen",
    "Granite",
    "Metal",
    "Plastic",
    "Rubber",
    "Soft",
    "Steel",
    "Wooden",
)
FILE_LOCATIONS = (
    "/Applications",
    "/Library",
    "/System",
    "/Users",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/etc/periodic",
    "/home",
    "/home/user/dir",
    "/lib",
    "/lost+found",
    "/media",
    "/mnt",
    "/net",
    "/opt",
    "/opt/lib",
    "/private",
    "/private/tmp",
    "/root",
    "/sbin",
    "/srv",
    "/usr",
    "/usr/libexec",
    "/usr/local/src",
    "/usr/ports",
    "/usr/share",
    "/var",
    "/var/log",
)
_CODE_ALPHABET = string.ascii_uppercase + string.digits
_EMAIL_DOMAIN = "terrifictotes.com"
_COMPANY_ACCOUNTS = (12_345_678, 23_456_789, 34_567_890)


@dataclass(frozen=True)
class Volumes:
    """How many rows each source table receives at a scale.

    Examples
    --------
    >>> Volumes.at_scale(1.0).sales_order
    11175
    >>> Volumes.at_scale(0.01).currency
    3
    """

    address: int
    counterparty: int
    currency: int
    department: int
    design: int
    payment_type: int
    staff: int
    sales_order: int
    purchase_order: int

    @classmethod
    def at_scale(cls, scale: float) -> Volumes:
        """Scale the real volumes; fixed reference tables keep their size."""
        if not scale > 0 or math.isinf(scale):
            raise ValueError(f"scale must be a positive number, got {scale}")
        counts = {
            table: real
            if table in _FIXED_TABLES
            else max(_MINIMUM_ROWS.get(table, 1), round(real * scale))
            for table, real in REAL_VOLUMES.items()
        }
        return cls(**counts)

    @property
    def transaction(self) -> int:
        """One transaction per sales or purchase order."""
        return self.sales_order + self.purchase_order

    @property
    def payment(self) -> int:
        """One payment per transaction."""
        return self.transaction

    def as_dict(self) -> dict[str, int]:
        """Row count per source table."""
        counts = {name: getattr(self, name) for name in REAL_VOLUMES}
        counts["transaction"] = self.transaction
        counts["payment"] = self.payment
        return counts


class EvenlySpread:
    """Picks a share of a stream so that every prefix holds that share to within one item.

    Bernoulli draws would put the 23 fractionless timestamps of 11,175 orders
    anywhere between 13 and 33; spreading them keeps small samples faithful.
    """

    def __init__(self, rate: float, rng: random.Random) -> None:
        self._rate = rate
        self._credit = rng.random()

    def __call__(self) -> bool:
        self._credit += self._rate
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False


class Order(NamedTuple):
    """One generated sales or purchase order, with what its transaction and payment need."""

    order_id: int
    is_sale: bool
    created_ms: int
    #: The row's values in column order, rendered to COPY text only when the table is loaded.
    values: tuple[object, ...]
    counterparty_id: int
    currency_id: int
    amount: Decimal
    payment_date: date


def _rng(seed: int, stream: str) -> random.Random:
    return random.Random(f"{seed}:{stream}")


def _between(rng: random.Random, low: int, high: int) -> int:
    """A whole number in [low, high]: ``randint`` without its argument checks, 3x faster."""
    return low + int(rng.random() * (high - low + 1))


_EPOCH = datetime(1970, 1, 1)


def _to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _timestamp(ms: int) -> str:
    moment = _EPOCH + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d}"


def _line(*values: object) -> str:
    return "\t".join(map(copy_field, values)) + "\n"


def _order_times(count: int, rng: random.Random, without_fraction_rate: float) -> Iterator[int]:
    """Yield ``count`` ascending creation times (ms) whose rate ramps up, then stays flat.

    A share ``without_fraction_rate`` of them falls on a whole second; no other does, so
    that share is exact rather than topped up by chance.
    """
    start, end = _to_ms(_FIRST_ORDER), _to_ms(LAST_ORDER)
    span_days = (end - start) / 86_400_000
    ramp = min(_RAMP_DAYS, span_days)
    total_weight = ramp / 2 + (span_days - ramp)
    without_fraction = EvenlySpread(without_fraction_rate, rng)
    for index in range(count):
        weight = (index + rng.random()) / count * total_weight
        days = math.sqrt(2 * ramp * weight) if weight < ramp / 2 else weight - ramp / 2 + ramp
        ms = start + int(days * 86_400_000)
        if without_fraction():
            ms -= ms % 1000
        elif ms % 1000 == 0:
            ms += 1
        yield ms


def _sales_order_times(volumes: Volumes, seed: int) -> Iterator[int]:
    return _order_times(
        volumes.sales_order, _rng(seed, "sales_order-times"), SALES_ORDER_WITHOUT_FRACTION_RATE
    )


def _purchase_order_times(volumes: Volumes, seed: int) -> Iterator[int]:
    return _order_times(
        volumes.purchase_order,
        _rng(seed, "purchase_order-times"),
        PURCHASE_ORDER_WITHOUT_FRACTION_RATE,
    )


class _People:
    """Names, with the snapshot's apostrophes and some non-ASCII letters."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._apostrophe = EvenlySpread(APOSTROPHE_SURNAME_RATE, rng)
        self._non_ascii = EvenlySpread(NON_ASCII_NAME_RATE, rng)

    def name(self) -> tuple[str, str]:
        rng = self._rng
        if self._non_ascii():
            first, last = rng.choice(_NON_ASCII_FIRST_NAMES), rng.choice(_NON_ASCII_LAST_NAMES)
        else:
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        if self._apostrophe():
            last = rng.choice(_APOSTROPHE_LAST_NAMES)
        return first, last

    def contact(self) -> str:
        first, last = self.name()
        return f"{self._rng.choice(_TITLES)}{first} {last}{self._rng.choice(_SUFFIXES)}"


def _addresses(volumes: Volumes, seed: int) -> Iterator[str]:
    rng = _rng(seed, "address")
    has_no_line_2 = EvenlySpread(ADDRESS_LINE_2_NULL_RATE, rng)
    has_no_district = EvenlySpread(DISTRICT_NULL_RATE, rng)
    leading_zero = EvenlySpread(POSTAL_CODE_LEADING_ZERO_RATE, rng)
    zip4 = EvenlySpread(POSTAL_CODE_ZIP4_RATE, rng)
    stamp = _timestamp(_to_ms(OPENING))
    for address_id in range(1, volumes.address + 1):
        number = str(rng.randint(1, 99_999)).zfill(rng.choice((3, 4, 5)))
        line_1 = f"{number} {rng.choice(_LAST_NAMES)} {rng.choice(_STREET_KINDS)}"
        line_2 = (
            None if has_no_line_2() else f"{rng.choice(_LAST_NAMES)} {rng.choice(_STREET_KINDS)}"
        )
        district = None if has_no_district() else rng.choice(_DISTRICTS)
        city = rng.choice(_CITY_FORMS).format(rng.choice(_LAST_NAMES))
        postal_code = f"{0 if leading_zero() else rng.randint(1, 9)}{rng.randint(0, 9999):04d}"
        if zip4():
            postal_code += f"-{rng.randint(0, 9999):04d}"
        phone = f"{rng.randint(0, 9999):04d} {rng.randint(0, 999_999):06d}"
        country = rng.choice(_COUNTRIES)
        yield _line(
            address_id, line_1, line_2, district, city, postal_code, country, phone, stamp, stamp
        )


def _counterparty_name(rng: random.Random, with_comma: bool, with_dash: bool) -> str:
    a, b, c = rng.sample(_LAST_NAMES, 3)
    if with_comma:
        return f"{a}, {b} and {c}"
    if with_dash:
        return f"{a} - {b}"
    return f"{a}{rng.choice(_COMPANY_FORMS)}"


def _counterparties(volumes: Volumes, seed: int) -> Iterator[str]:
    rng = _rng(seed, "counterparty")
    people = _People(rng)
    comma = EvenlySpread(LEGAL_NAME_WITH_COMMA_RATE, rng)
    dash = EvenlySpread(LEGAL_NAME_WITH_DASH_RATE / (1 - LEGAL_NAME_WITH_COMMA_RATE), rng)
    stamp = _timestamp(_to_ms(_PEOPLE_LOADED))
    for counterparty_id in range(1, volumes.counterparty + 1):
        with_comma = comma()
        name = _counterparty_name(rng, with_comma, not with_comma and dash())
        yield _line(
            counterparty_id,
            name,
            rng.randint(1, volumes.address),
            people.contact(),
            people.contact(),
            stamp,
            stamp,
        )


def _currencies(volumes: Volumes, seed: int) -> Iterator[str]:
    stamp = _timestamp(_to_ms(OPENING))
    for currency_id, code in enumerate(CURRENCIES, start=1):
        yield _line(currency_id, code, stamp, stamp)


def _departments(volumes: Volumes, seed: int) -> Iterator[str]:
    stamp = _timestamp(_to_ms(OPENING))
    for department_id, (name, location, manager) in enumerate(DEPARTMENTS, start=1):
        yield _line(department_id, name, location, manager, stamp, stamp)


def _payment_types(volumes: Volumes, seed: int) -> Iterator[str]:
    stamp = _timestamp(_to_ms(OPENING))
    for payment_type_id, name in enumerate(PAYMENT_TYPES, start=1):
        yield _line(payment_type_id, name, stamp, stamp)


def _design_times(volumes: Volumes, seed: int) -> list[int]:
    """Creation time of every design, by id: a few at opening, then a steady trickle."""
    rng = _rng(seed, "design-times")
    at_opening = max(1, round(volumes.design * DESIGNS_AT_OPENING_RATE))
    opening, end = _to_ms(OPENING), _to_ms(LAST_ORDER)
    later = sorted(rng.randint(opening + 1, end) for _ in range(volumes.design - at_opening))
    return [opening] * at_opening + later


def _designs(volumes: Volumes, seed: int) -> Iterator[str]:
    rng = _rng(seed, "design")
    for design_id, created_ms in enumerate(_design_times(volumes, seed), start=1):
        material = rng.choice(MATERIALS)
        drawn = _EPOCH + timedelta(milliseconds=created_ms) - timedelta(days=rng.randint(0, 400))
        token = "".join(rng.choices(string.ascii_lowercase + string.digits, k=4))
        file_name = f"{material.lower()}-{drawn:%Y%m%d}-{token}.json"
        stamp = _timestamp(created_ms)
        yield _line(design_id, material, rng.choice(FILE_LOCATIONS), file_name, stamp, stamp)


def _staff(volumes: Volumes, seed: int) -> Iterator[str]:
    rng = _rng(seed, "staff")
    people = _People(rng)
    stamp = _timestamp(_to_ms(_PEOPLE_LOADED))
    for staff_id in range(1, volumes.staff + 1):
        first, last = people.name()
        email = f"{first}.{last}@{_EMAIL_DOMAIN}".lower().replace(" ", "")
        department_id = rng.randint(1, len(DEPARTMENTS))
        yield _line(staff_id, first, last, department_id, email, stamp, stamp)


def _agreed_dates(created_ms: int, rng: random.Random, late: bool) -> tuple[date, date]:
    created = _EPOCH + timedelta(milliseconds=created_ms)
    delivery_days = rng.uniform(8, 650) if late else rng.uniform(0, 7)
    delivery = (created + timedelta(days=delivery_days)).date()
    payment = (created + timedelta(days=rng.uniform(0, 6))).date()
    return delivery, payment


def sales_orders(volumes: Volumes, seed: int) -> Iterator[Order]:
    """Yield the sales orders in id (and creation) order.

    Examples
    --------
    >>> first = next(sales_orders(Volumes.at_scale(0.01), seed=7))
    >>> first.order_id, first.is_sale
    (1, True)
    """
    rng = _rng(seed, "sales_order")
    late = EvenlySpread(LATE_DELIVERY_RATE, rng)
    design_times = _design_times(volumes, seed)
    times = _sales_order_times(volumes, seed)
    for order_id, created_ms in enumerate(times, start=1):
        # Only designs that exist when the order is placed can be sold.
        available_designs = max(1, bisect.bisect_right(design_times, created_ms))
        design_id = _between(rng, 1, available_designs)
        units = _between(rng, 1_000, 100_000)
        price = Decimal(_between(rng, 200, 400)).scaleb(-2)
        currency_id = _between(rng, 1, len(CURRENCIES))
        counterparty_id = _between(rng, 1, volumes.counterparty)
        delivery, payment = _agreed_dates(created_ms, rng, late())
        stamp = _timestamp(created_ms)
        values = (
            order_id,
            design_id,
            _between(rng, 1, volumes.staff),
            counterparty_id,
            units,
            price,
            currency_id,
            delivery.isoformat(),
            payment.isoformat(),
            _between(rng, 1, volumes.address),
            stamp,
            stamp,
        )
        yield Order(
            order_id, True, created_ms, values, counterparty_id, currency_id, units * price, payment
        )


def purchase_orders(volumes: Volumes, seed: int) -> Iterator[Order]:
    """Yield the purchase orders in id (and creation) order."""
    rng = _rng(seed, "purchase_order")
    late = EvenlySpread(LATE_DELIVERY_RATE, rng)
    times = _purchase_order_times(volumes, seed)
    for order_id, created_ms in enumerate(times, start=1):
        quantity = _between(rng, 1, 999)
        price = Decimal(_between(rng, 100, 99_999)).scaleb(-2)
        currency_id = _between(rng, 1, len(CURRENCIES))
        counterparty_id = _between(rng, 1, volumes.counterparty)
        delivery, payment = _agreed_dates(created_ms, rng, late())
        stamp = _timestamp(created_ms)
        values = (
            order_id,
            _between(rng, 1, volumes.staff),
            counterparty_id,
            "".join(rng.choices(_CODE_ALPHABET, k=7)),
            quantity,
            price,
            currency_id,
            delivery.isoformat(),
            payment.isoformat(),
            _between(rng, 1, volumes.address),
            stamp,
            stamp,
        )
        yield Order(
            order_id,
            False,
            created_ms,
            values,
            counterparty_id,
            currency_id,
            quantity * price,
            payment,
        )


def orders_by_time(volumes: Volumes, seed: int) -> Iterator[Order]:
    """Sales and purchase orders merged in creation order: the order transactions get ids."""
    return heapq.merge(
        sales_orders(volumes, seed),
        purchase_orders(volumes, seed),
        key=lambda order: (order.created_ms, not order.is_sale, order.order_id),
    )


def _timeline(volumes: Volumes, seed: int) -> Iterator[tuple[int, bool, int]]:
    """(created_ms, is_sale, order id) of every order, in creation order.

    Only the time streams are replayed: transactions need no other order attribute.
    """
    sales = ((ms, True, key) for key, ms in enumerate(_sales_order_times(volumes, seed), 1))
    purchases = ((ms, False, key) for key, ms in enumerate(_purchase_order_times(volumes, seed), 1))
    return heapq.merge(sales, purchases, key=lambda item: (item[0], not item[1], item[2]))


def _transactions(volumes: Volumes, seed: int) -> Iterator[str]:
    for transaction_id, (created_ms, is_sale, order_id) in enumerate(
        _timeline(volumes, seed), start=1
    ):
        stamp = _timestamp(created_ms)
        if is_sale:
            yield _line(transaction_id, "SALE", order_id, None, stamp, stamp)
        else:
            yield _line(transaction_id, "PURCHASE", None, order_id, stamp, stamp)


def _payments(volumes: Volumes, seed: int) -> Iterator[str]:
    rng = _rng(seed, "payment")
    last_day = LAST_ORDER.date()
    for transaction_id, order in enumerate(orders_by_time(volumes, seed), start=1):
        refund = rng.random() < _REFUND_RATE
        if order.is_sale:
            payment_type_id = _SALES_REFUND if refund else _SALES_RECEIPT
        else:
            payment_type_id = _PURCHASE_REFUND if refund else _PURCHASE_PAYMENT
        # Payments due in the past are settled, those still ahead mostly are not.
        paid = order.payment_date < last_day or rng.random() < 0.2
        stamp = _timestamp(order.created_ms)
        yield _line(
            transaction_id,
            transaction_id,
            order.counterparty_id,
            order.amount,
            order.currency_id,
            payment_type_id,
            "t" if paid else "f",
            order.payment_date.isoformat(),
            rng.choice(_COMPANY_ACCOUNTS),
            10_000_000 + order.counterparty_id * 7_919 % 89_999_999,
            stamp,
            stamp,
        )


def _order_lines(
    orders: Callable[[Volumes, int], Iterator[Order]],
) -> Callable[[Volumes, int], Iterator[str]]:
    def lines(volumes: Volumes, seed: int) -> Iterator[str]:
        return (_line(*order.values) for order in orders(volumes, seed))

    return lines


#: Source table -> generator of its COPY lines, in foreign-key order.
TABLE_GENERATORS: dict[str, Callable[[Volumes, int], Iterator[str]]] = {
    "address": _addresses,
    "counterparty": _counterparties,
    "currency": _currencies,
    "department": _departments,
    "design": _designs,
    "payment_type": _payment_types,
    "staff": _staff,
    "sales_order": _order_lines(sales_orders),
    "purchase_order": _order_lines(purchase_orders),
    "transaction": _transactions,
    "payment": _payments,
}


def seed_synthetic(
    conn: psycopg.Connection[Any],
    *,
    scale: float = 1.0,
    seed: int = 0,
    replace: bool = False,
    on_table: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Create the totesys schema and fill it with generated data, in one transaction.

    Parameters
    ----------
    conn
        Connection to the (empty) source database.
    scale
        1.0 gives the real volumes; 0.01 a small source for tests; 100 a large one.
    seed
        The same seed always gives the same rows.
    replace
        Drop an existing totesys schema first instead of refusing.
    on_table
        Called with ``(table, rows)`` after each table is loaded (progress reporting).

    Returns
    -------
    dict
        Rows loaded per table.

    Examples
    --------
    >>> with connect(dsn) as conn:  # doctest: +SKIP
    ...     seed_synthetic(conn, scale=0.01, seed=42)["sales_order"]
    112
    """
    volumes = Volumes.at_scale(scale)
    loaded: dict[str, int] = {}
    with conn.transaction():
        create_source_tables(conn, replace=replace)
        for table, generate in TABLE_GENERATORS.items():
            loaded[table] = copy_lines(
                conn, table, table_columns(conn, table), generate(volumes, seed)
            )
            if on_table:
                on_table(table, loaded[table])
        add_source_constraints(conn)
    return loaded
