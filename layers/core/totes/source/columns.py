"""The columns of each totesys table, as the pipeline expects them (DESIGN.md section 6).

Ingest records any other column it meets in the batch manifest, so a schema change
in the source is visible instead of silently reshaping the raw zone.
"""

from typing import Final

_AUDIT = ("created_at", "last_updated")

SOURCE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "address": (
        "address_id",
        "address_line_1",
        "address_line_2",
        "district",
        "city",
        "postal_code",
        "country",
        "phone",
        *_AUDIT,
    ),
    "counterparty": (
        "counterparty_id",
        "counterparty_legal_name",
        "legal_address_id",
        "commercial_contact",
        "delivery_contact",
        *_AUDIT,
    ),
    "currency": ("currency_id", "currency_code", *_AUDIT),
    "department": ("department_id", "department_name", "location", "manager", *_AUDIT),
    "design": ("design_id", "design_name", "file_location", "file_name", *_AUDIT),
    "payment_type": ("payment_type_id", "payment_type_name", *_AUDIT),
    "staff": ("staff_id", "first_name", "last_name", "department_id", "email_address", *_AUDIT),
    "sales_order": (
        "sales_order_id",
        "design_id",
        "staff_id",
        "counterparty_id",
        "units_sold",
        "unit_price",
        "currency_id",
        "agreed_delivery_date",
        "agreed_payment_date",
        "agreed_delivery_location_id",
        *_AUDIT,
    ),
    "purchase_order": (
        "purchase_order_id",
        "staff_id",
        "counterparty_id",
        "item_code",
        "item_quantity",
        "item_unit_price",
        "currency_id",
        "agreed_delivery_date",
        "agreed_payment_date",
        "agreed_delivery_location_id",
        *_AUDIT,
    ),
    "transaction": (
        "transaction_id",
        "transaction_type",
        "sales_order_id",
        "purchase_order_id",
        *_AUDIT,
    ),
    "payment": (
        "payment_id",
        "transaction_id",
        "counterparty_id",
        "payment_amount",
        "currency_id",
        "payment_type_id",
        "paid",
        "payment_date",
        "company_ac_number",
        "counterparty_ac_number",
        *_AUDIT,
    ),
}
