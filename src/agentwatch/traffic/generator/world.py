"""The world of the Acme support agent: its knowledge base, catalog, plans and tools.

The articles the agent retrieves, the items and plans it sells, the
services behind its tools and their latencies, the customers' first names
and the system prompt; :class:`Amount` and :class:`Day` are the facts an
answer states, and ``evidence_values`` finds the ones a turn's tool results
and documents support.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

DATA_SOURCE = "acme-kb"

_KB: dict[str, tuple[str, str]] = {
    "kb-refund-policy": ("Refund policy", (
        "Items can be refunded within 30 days of delivery. Approved refunds go back to the original payment "
        "method within 5 business days. Shipping fees are refunded only for damaged or wrong items.")),
    "kb-returns": ("Returning an item", (
        "Print a prepaid return label from the order page. Return shipping is free for orders over $50.00; "
        "for smaller orders a $6.95 label fee is deducted from the refund.")),
    "kb-shipping": ("Shipping options", (
        "Standard delivery takes 3-5 business days and costs $4.99, free for orders over $35.00. Express "
        "delivery takes 1-2 business days and costs $12.00. The delivery address cannot be changed once an "
        "order has shipped; the carrier can hold it at a pickup point instead.")),
    "kb-plans": ("Acme plans and prices", (
        "Basic costs $9.99 per month, Plus $19.99 per month and Pro $39.99 per month. Paying yearly costs "
        "ten months' price: $99.90, $199.90 and $399.90.")),
    "kb-plan-changes": ("Changing plans", (
        "Upgrades take effect immediately and the price difference for the rest of the billing period is "
        "charged pro rata. Downgrades take effect on the next renewal date; nothing is refunded.")),
    "kb-billing": ("Invoices and due dates", (
        "Invoices are issued on your billing day each month and are due within 14 days. A late fee of $5.00 "
        "applies to invoices still unpaid after the due date. Invoices can be downloaded from Account > "
        "Billing.")),
    "kb-cancellation": ("Cancelling a subscription", (
        "You can cancel at any time. You keep access until the end of the paid period and partial months "
        "are not refunded. Reactivating within 90 days restores your data.")),
    "kb-payment-methods": ("Payment methods", (
        "Acme accepts Visa, Mastercard, American Express and PayPal. Card details can be updated under "
        "Account > Billing; the new card is charged from the next invoice on.")),
}

_CATALOG: tuple[tuple[str, str], ...] = (
    ("Wireless Mouse", "24.99"), ("USB-C Hub", "42.50"), ("Desk Lamp", "35.00"),
    ("Noise-Cancelling Headphones", "129.00"), ("Laptop Stand", "48.75"), ("Mechanical Keyboard", "89.90"),
    ("HD Webcam", "59.00"), ("Phone Case", "15.50"), ("Travel Backpack", "74.00"), ("Smart Plug", "19.95"),
)
_PLANS: dict[str, Decimal] = {"Basic": Decimal("9.99"), "Plus": Decimal("19.99"), "Pro": Decimal("39.99")}
_CARRIERS = ("UPS", "DHL", "USPS")
_SERVICES = {
    "lookup_order": "order service", "track_shipment": "carrier API", "refund_api": "payments service",
    "get_invoice": "billing service", "get_subscription": "subscription service",
    "change_plan": "subscription service", "cancel_subscription": "subscription service",
}
_TOOL_DESCRIPTIONS = {
    "lookup_order": "Look up an order by id.",
    "track_shipment": "Get the carrier's latest tracking status of a shipment.",
    "refund_api": "Issue a refund for an order.",
    "get_invoice": "Get a customer's latest invoice.",
    "get_subscription": "Get a customer's subscription.",
    "change_plan": "Move a customer's subscription to another plan.",
    "cancel_subscription": "Cancel a customer's subscription.",
}
#: Median latency (ms) of each tool.
_TOOL_LATENCY_MS = {
    "lookup_order": 90, "track_shipment": 220, "refund_api": 480, "get_invoice": 130,
    "get_subscription": 80, "change_plan": 360, "cancel_subscription": 310,
}
_ACTION_TOOLS = frozenset({"refund_api", "change_plan", "cancel_subscription"})
_FIRST_NAMES = ("Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jon", "Kai", "Lena",
                "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wei", "Yara")
#: The output guardrail every answer passes through.
_GUARDRAIL = "output_screen"
_SYSTEM_PROMPT = (
    "You are the customer-support assistant of Acme, an online shop that also sells subscription plans. "
    "Use the tools to look things up and to act; never promise a refund, plan change or cancellation the "
    "tools did not confirm. Answer only from tool results and the knowledge-base articles you are given. "
    "Follow the policies in those articles.")

_AMOUNT = re.compile(r"\d+(?:\.\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Amount:
    """A money amount stated in an answer."""

    value: Decimal

    def __str__(self) -> str:
        return f"${self.value:.2f}"


@dataclass(frozen=True)
class Day:
    """A date stated in an answer."""

    value: date

    def __str__(self) -> str:
        return self.value.isoformat()


Fact = Amount | Day | str


def evidence_values(texts: Sequence[str]) -> tuple[set[Decimal], set[str]]:
    """Every number (as a 2-decimal amount) and ISO date written in ``texts``."""
    amounts: set[Decimal] = set()
    dates: set[str] = set()
    for text in texts:
        amounts.update(Decimal(m).quantize(Decimal("0.01")) for m in _AMOUNT.findall(text))
        dates.update(_ISO_DATE.findall(text))
    return amounts, dates


def _money(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


def _add_business_days(day: date, n: int) -> date:
    while n > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day
