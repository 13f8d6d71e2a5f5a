"""Generate the demo's synthetic structured tables (customers, orders, refunds, tickets) as CSV files.

The tables describe the customers of "Lumen", the imaginary product of the demo corpus, and follow the
rules in its documents: plan prices per seat (plans/*.md), the refund policy (policies/refund-policy.md),
support priorities and response targets (policies/support-response-times.md) and the error codes of
errors/*.md. The output is deterministic: a fixed seed and the standard library only.

Run from a checkout with `python tools/make_tables.py`; it rewrites `rag_server/demo/tables/`.
"""

from __future__ import annotations

import calendar
import csv
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

SEED = 20240101
START = date(2024, 1, 1)
END = date(2026, 10, 31)  # The data is a snapshot taken at the end of this day.
LAST_SIGNUP = date(2026, 8, 31)
PENDING_FROM = END - timedelta(days=30)  # Refund requests this recent are still being reviewed.

TABLES_DIR = Path(__file__).resolve().parents[1] / "rag_server" / "demo" / "tables"

N_CUSTOMERS = 400
PLANS = ("free", "team", "business", "enterprise")
PLAN_WEIGHTS = (28, 40, 23, 9)
REGIONS = ("us", "eu", "uk", "apac", "latam")
REGION_WEIGHTS = (45, 28, 11, 11, 5)
CHURN_RATE = {"free": 0.25, "team": 0.26, "business": 0.16, "enterprise": 0.08}
ANNUAL_SHARE = {"team": 0.35, "business": 0.55, "enterprise": 1.0}

# Prices from plans/plan-comparison.md, in USD per seat: per month when billed monthly, per year annually.
MONTHLY_PRICE = {"team": 12, "business": 29}
ANNUAL_PRICE = {"team": 120, "business": 288}
ENTERPRISE_MINIMUM = 45_000  # Per year, for at least 100 seats.
ENTERPRISE_PER_SEAT = 450

# Signups are seasonal: busy after new year and in autumn, quiet in summer and December.
SEASON = (1.3, 1.1, 1.2, 1.0, 1.0, 0.9, 0.7, 0.7, 1.2, 1.3, 1.1, 0.6)
# Ticket volume per month; v2.4.0 (18 June 2024) shipped a known issue fixed in v2.4.1 (9 July 2024).
TICKET_SPIKES = {(2024, 3): 1.3, (2024, 6): 1.8, (2024, 7): 1.6, (2025, 11): 1.4}
# Months with an outage, after which Business and Enterprise customers asked for SLA credits.
OUTAGE_MONTHS = ((2024, 6), (2025, 2), (2025, 11), (2026, 5), (2026, 9))

NAME_FIRST = (
    "Acme", "Alder", "Apex", "Arbor", "Atlas", "Aurora", "Beacon", "Birch", "Blue Harbor", "Brightline",
    "Cascade", "Cedar", "Cobalt", "Copper", "Crescent", "Delta", "Ember", "Evergreen", "Falcon", "Fjord",
    "Granite", "Harbor", "Helix", "Horizon", "Iris", "Juniper", "Keystone", "Lakeside", "Lighthouse", "Maple",
    "Meridian", "Nimbus", "Northwind", "Oakridge", "Orbit", "Pinnacle", "Prism", "Quartz", "Redwood", "Riverbend",
    "Sable", "Sequoia", "Silverline", "Solstice", "Summit", "Tandem", "Terra", "Tidewater", "Vertex", "Willow",
)  # fmt: skip
NAME_SECOND = (
    "Analytics", "Apparel", "Bank", "Bio", "Capital", "Clinics", "Consulting", "Dental", "Energy", "Foods",
    "Freight", "Games", "Health", "Hotels", "Insurance", "Labs", "Logistics", "Media", "Motors", "Retail",
    "Robotics", "Software", "Studios", "Telecom", "Travel",
)  # fmt: skip
EMAIL_LOCAL = ("admin", "billing", "finance", "it", "ops", "data", "accounts")

TICKET_CATEGORIES = ("sync", "authentication", "billing", "export", "api", "other")
TICKET_CATEGORY_WEIGHTS = (26, 17, 14, 13, 14, 16)
# Error codes per category (from the file names in corpus/errors/) and the share of tickets with no code.
ERROR_CODES: dict[str, tuple[tuple[str, ...], tuple[int, ...], float]] = {
    "sync": (("SYNC-409", "SYNC-422", "ERR-4012", "ERR-4013"), (30, 25, 25, 20), 0.2),
    "authentication": (("E-AUTH-017", "E-AUTH-009", "E-AUTH-014", "E-AUTH-021"), (40, 25, 20, 15), 0.3),
    "billing": (("BILL-402",), (1,), 0.6),
    "export": (("ERR-5003",), (1,), 0.35),
    "api": (("ERR-4029", "ERR-5001"), (70, 30), 0.3),
    "other": (("ERR-5001",), (1,), 0.7),
}
PRIORITIES = ("urgent", "high", "normal", "low")
PRIORITY_WEIGHTS = {
    "team": (2, 13, 60, 25),
    "business": (5, 20, 55, 20),
    "enterprise": (10, 25, 50, 15),
}
TICKETS_PER_MONTH = {"team": 0.07, "business": 0.15, "enterprise": 0.4}
MEAN_RESOLUTION_DAYS = {"urgent": 0.8, "high": 1.5, "normal": 3.0, "low": 6.0}


@dataclass
class Customer:
    """A workspace's company, with the hidden timeline of its paid subscription."""

    customer_id: int
    name: str
    email: str
    plan: str
    region: str
    seats: int
    signup_date: date
    status: str = "active"
    billing_cycle: str = ""
    paid_from: date | None = None  # First charge; None for Free customers.
    paid_until: date | None = None  # Churned paid customers: the date of their last charge.
    upgraded_on: date | None = None  # Business customers who started on Team.
    early_cancel: bool = False  # Cancelled within days of the first charge.

    def plan_on(self, day: date) -> str:
        """The plan the customer was on at `day`."""
        return "team" if self.upgraded_on is not None and day < self.upgraded_on else self.plan

    def row(self) -> list[object]:
        return [
            self.customer_id,
            self.name,
            self.email,
            self.plan,
            self.region,
            self.seats,
            self.signup_date,
            self.status,
        ]


@dataclass
class Order:
    """One invoice of a subscription."""

    customer: Customer
    plan: str
    billing_cycle: str
    amount: float
    order_date: date
    status: str = "paid"
    first: bool = False  # The customer's first charge.
    order_id: int = 0

    def row(self) -> list[object]:
        return [
            self.order_id,
            self.customer.customer_id,
            self.plan,
            self.billing_cycle,
            f"{self.amount:.2f}",
            "usd",
            self.order_date,
            self.status,
        ]


@dataclass
class Refund:
    """A refund request against one order; `amount` is the amount requested."""

    order: Order
    amount: float
    reason: str
    refund_date: date
    status: str
    refund_id: int = 0

    def row(self) -> list[object]:
        return [
            self.refund_id,
            self.order.order_id,
            self.order.customer.customer_id,
            f"{self.amount:.2f}",
            self.reason,
            self.refund_date,
            self.status,
        ]


@dataclass
class Ticket:
    """A support ticket."""

    customer: Customer
    category: str
    priority: str
    status: str
    error_code: str | None
    opened_at: date
    resolved_at: date | None
    first_response_hours: float
    ticket_id: int = 0

    def row(self) -> list[object]:
        return [
            self.ticket_id,
            self.customer.customer_id,
            self.category,
            self.priority,
            self.status,
            self.error_code or "",
            self.opened_at,
            self.resolved_at or "",
            f"{self.first_response_hours:.2f}",
        ]


@dataclass
class Tables:
    """Everything generated, before ids are assigned."""

    customers: list[Customer]
    orders: list[Order] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)


# --- Dates ------------------------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months, clamped to the end of shorter months."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def months_between(first: date, last: date) -> list[tuple[int, int]]:
    """The (year, month) pairs from `first` to `last`, both included."""
    months, current = [], date(first.year, first.month, 1)
    while current <= last:
        months.append((current.year, current.month))
        current = add_months(current, 1)
    return months


def random_day(rng: random.Random, first: date, last: date) -> date:
    """A uniformly random date between `first` and `last`, both included."""
    return first + timedelta(days=rng.randint(0, (last - first).days))


def random_workday(rng: random.Random, first: date, last: date) -> date:
    """A random date in the range; weekend days are drawn less often."""
    while True:
        day = random_day(rng, first, last)
        if day.weekday() < 5 or rng.random() < 0.35:
            return day


def signup_date(rng: random.Random) -> date:
    """A signup date with growth over time and seasonality."""
    months = months_between(START, LAST_SIGNUP)
    weights = [(1 + 0.012 * i) * SEASON[month - 1] for i, (_, month) in enumerate(months)]
    year, month = rng.choices(months, weights)[0]
    first = date(year, month, 1)
    return random_day(rng, first, date(year, month, calendar.monthrange(year, month)[1]))


# --- Customers --------------------------------------------------------------------------------------------


def company_names(rng: random.Random, count: int) -> list[str]:
    """`count` distinct company names."""
    names = [f"{first} {second}" for first in NAME_FIRST for second in NAME_SECOND]
    return rng.sample(names, count)


def seat_count(rng: random.Random, plan: str) -> int:
    """Seats within the plan's limits, skewed to small workspaces."""
    if plan == "free":
        return rng.choices((1, 2, 3), (45, 30, 25))[0]
    low, high, median = {"team": (3, 50, 8), "business": (5, 250, 35), "enterprise": (100, 2000, 230)}[plan]
    return min(high, max(low, round(rng.lognormvariate(math.log(median), 0.65))))


def renewal_dates(customer: Customer) -> list[date]:
    """The billing dates of a paid customer from the first charge up to the snapshot date."""
    assert customer.paid_from is not None
    step = 12 if customer.billing_cycle == "annual" else 1
    dates, k = [], 0
    while (day := add_months(customer.paid_from, k * step)) <= END:
        dates.append(day)
        k += 1
    return dates


def start_subscription(rng: random.Random, customer: Customer) -> None:
    """Fill in the paid timeline of a Team, Business or Enterprise customer."""
    plan = customer.plan
    customer.billing_cycle = "annual" if rng.random() < ANNUAL_SHARE[plan] else "monthly"
    if plan == "enterprise" or rng.random() < 0.6:  # Paid right after the 14-day Business trial.
        paid_from = customer.signup_date + timedelta(days=14 + rng.randint(0, 3))
    else:  # Stayed on Free for a while first.
        paid_from = customer.signup_date + timedelta(days=rng.randint(20, 300))
    customer.paid_from = min(paid_from, END - timedelta(days=rng.randint(20, 40)))
    if plan == "business" and rng.random() < 0.18:
        upgrade = add_months(
            customer.paid_from, rng.choice((12, 24) if customer.billing_cycle == "annual" else range(2, 18))
        )
        if upgrade <= END:
            customer.upgraded_on = upgrade


def churn(rng: random.Random, customer: Customer) -> None:
    """Maybe mark the customer churned, ending its subscription at the end of a billing period."""
    if rng.random() >= CHURN_RATE[customer.plan]:
        return
    if customer.paid_from is None:
        customer.status = "churned"
        return
    billing_dates = renewal_dates(customer)
    if len(billing_dates) < 2:
        return  # Its first billing period has not ended yet.
    customer.status = "churned"
    customer.early_cancel = customer.billing_cycle == "monthly" and rng.random() < 0.15
    last = 0 if customer.early_cancel else rng.randint(0, len(billing_dates) - 2)
    customer.paid_until = billing_dates[last]


def make_customers(rng: random.Random) -> list[Customer]:
    """The customers, numbered in signup order."""
    names = company_names(rng, N_CUSTOMERS)
    customers = []
    for name in names:
        plan = rng.choices(PLANS, PLAN_WEIGHTS)[0]
        slug = name.lower().replace(" ", "-")
        customer = Customer(
            customer_id=0,
            name=name,
            email=f"{rng.choice(EMAIL_LOCAL)}@{slug}.example",
            plan=plan,
            region=rng.choices(REGIONS, REGION_WEIGHTS)[0],
            seats=seat_count(rng, plan),
            signup_date=signup_date(rng),
        )
        if plan != "free":
            start_subscription(rng, customer)
        churn(rng, customer)
        customers.append(customer)
    customers.sort(key=lambda c: (c.signup_date, c.name))
    for number, customer in enumerate(customers, start=1):
        customer.customer_id = number
    return customers


# --- Orders -----------------------------------------------------------------------------------------------


def price(plan: str, billing_cycle: str, seats: int) -> float:
    """The invoice amount for one billing period, from the documented prices."""
    if plan == "enterprise":
        return float(max(ENTERPRISE_MINIMUM, seats * ENTERPRISE_PER_SEAT))
    per_seat = ANNUAL_PRICE[plan] if billing_cycle == "annual" else MONTHLY_PRICE[plan]
    return float(per_seat * seats)


def customer_orders(rng: random.Random, customer: Customer) -> list[Order]:
    """The invoices of one paid customer: each renewal, and failed payments with their retries."""
    orders: list[Order] = []
    for number, day in enumerate(renewal_dates(customer)):
        if customer.paid_until is not None and day > customer.paid_until:
            break
        plan = customer.plan_on(day)
        amount = price(plan, customer.billing_cycle, customer.seats)
        if rng.random() < 0.04 and number > 0:  # BILL-402: the card was declined, retried days later.
            orders.append(Order(customer, plan, customer.billing_cycle, amount, day, status="failed"))
            day += timedelta(days=rng.randint(2, 7))
            if day > END:
                continue
        orders.append(Order(customer, plan, customer.billing_cycle, amount, day, first=number == 0))
    return orders


def make_orders(rng: random.Random, customers: Sequence[Customer]) -> list[Order]:
    """All invoices."""
    return [
        order
        for customer in customers
        if customer.paid_from is not None
        for order in customer_orders(rng, customer)
    ]


# --- Refunds ----------------------------------------------------------------------------------------------


def decided(day: date, approved: bool) -> str:
    """The status of a refund request recorded on `day`."""
    if day > PENDING_FROM:
        return "pending"
    return "approved" if approved else "rejected"


def refund(order: Order, amount: float, reason: str, day: date, approved: bool) -> Refund | None:
    """A refund request, if it falls inside the snapshot; a full approved refund marks the order refunded."""
    if day > END:
        return None
    status = decided(day, approved)
    if status == "approved" and amount == order.amount:
        order.status = "refunded"
    return Refund(order, round(amount, 2), reason, day, status)


def cancellation_refunds(rng: random.Random, orders: Sequence[Order]) -> list[Refund]:
    """Churned customers asking for their last charge back; approved only within the policy's windows."""
    last_paid: dict[int, Order] = {}
    for order in orders:
        if order.status == "paid" and order.customer.status == "churned":
            last_paid[id(order.customer)] = order
    refunds = []
    for order in last_paid.values():
        customer = order.customer
        share_asking = 0.85 if customer.early_cancel else 0.75 if customer.billing_cycle == "annual" else 0.5
        if rng.random() >= share_asking:
            continue
        delay = rng.randint(1, 16) if customer.early_cancel else rng.randint(1, 45)
        # Annual charges: 30 days; monthly: only the first charge, within 14 days.
        window = 30 if order.billing_cycle == "annual" else (14 if order.first else -1)
        day = order.order_date + timedelta(days=delay)
        made = refund(order, order.amount, "cancellation", day, delay <= window)
        if made:
            refunds.append(made)
    return refunds


def duplicate_charges(rng: random.Random, orders: list[Order]) -> list[Refund]:
    """Card payments charged twice by mistake (not Enterprise, invoiced by contract): the duplicate is refunded."""
    refunds = []
    for order in list(orders):
        if order.status != "paid" or order.plan == "enterprise" or rng.random() >= 0.016:
            continue
        duplicate = Order(order.customer, order.plan, order.billing_cycle, order.amount, order.order_date)
        orders.append(duplicate)
        made = refund(
            duplicate,
            duplicate.amount,
            "duplicate_charge",
            order.order_date + timedelta(days=rng.randint(1, 6)),
            True,
        )
        if made:
            refunds.append(made)
    return refunds


def other_refunds(rng: random.Random, orders: Sequence[Order]) -> list[Refund]:
    """Billing errors (partly refunded), downgrade requests and SLA credits asked as cash (both rejected)."""
    refunds: list[Refund] = []
    paid = [order for order in orders if order.status == "paid"]
    for order in paid:
        customer, draw = order.customer, rng.random()
        day = order.order_date + timedelta(days=rng.randint(2, 25))
        if (draw < 0.028 and order.plan != "enterprise") or draw < 0.01:
            seats = max(1, min(customer.seats - 1, rng.randint(1, 5)))
            amount = order.amount * seats / customer.seats
            made = refund(order, amount, "billing_error", day, rng.random() < 0.85)
        elif draw < 0.09 and order.plan == "business":
            made = refund(order, order.amount * rng.choice((0.25, 0.5, 1.0)), "downgrade", day, False)
        elif (
            (order.order_date.year, order.order_date.month) in OUTAGE_MONTHS
            and order.plan != "team"
            and draw < 0.4
        ):
            made = refund(
                order, round(order.amount * rng.choice((0.1, 0.25)), 2), "outage_credit", day, False
            )
        else:
            made = None
        if made:
            refunds.append(made)
    return refunds


# --- Tickets ----------------------------------------------------------------------------------------------


def response_hours(rng: random.Random, plan: str, priority: str, opened: date) -> float:
    """Hours to the first response, around the targets of support-response-times.md."""
    if plan == "enterprise" and priority == "urgent":
        hours = rng.uniform(0.1, 1.0) if rng.random() < 0.93 else rng.uniform(1.0, 3.0)
    elif plan == "enterprise" and priority == "high":
        hours = rng.uniform(0.3, 4.0) if rng.random() < 0.92 else rng.uniform(4.0, 9.0)
    else:
        target = 4.0 if plan == "business" else 24.0
        if priority in ("urgent", "high"):
            target /= 2
        hours = rng.uniform(0.2, target) if rng.random() < 0.9 else rng.uniform(target, target * 2.5)
        if opened.weekday() >= 5:  # Business days only: weekend tickets wait until Monday.
            hours += (7 - opened.weekday()) * 24 - rng.uniform(0, 12)
    return round(hours, 2)


def error_code(rng: random.Random, category: str, plan: str) -> str | None:
    """An error code from the category's codes, or None."""
    codes, weights, none_share = ERROR_CODES[category]
    if rng.random() < none_share:
        return None
    code = rng.choices(codes, weights)[0]
    if code == "E-AUTH-017" and plan == "team":  # SAML sign-on needs Business or Enterprise.
        code = rng.choice(codes[1:])
    return code


def ticket(
    rng: random.Random, customer: Customer, opened: date, category: str | None = None, code: str | None = None
) -> Ticket:
    """A ticket opened by `customer` on `opened`."""
    plan = customer.plan_on(opened)
    if category is None:
        category = rng.choices(TICKET_CATEGORIES, TICKET_CATEGORY_WEIGHTS)[0]
        code = error_code(rng, category, plan)
    weights = list(PRIORITY_WEIGHTS[plan])
    if code in ("SYNC-409", "ERR-5001", "ERR-4013"):
        weights[0], weights[1] = weights[0] * 2, weights[1] * 2
    priority = rng.choices(PRIORITIES, weights)[0]
    hours = response_hours(rng, plan, priority, opened)
    days = max(math.ceil(hours / 24), round(rng.expovariate(1 / MEAN_RESOLUTION_DAYS[priority])))
    if category == "sync":
        days += rng.randint(0, 2)
    done = opened + timedelta(days=days)
    resolved: date | None = done
    if done > END or rng.random() < 0.015:
        resolved, status = None, "open"
    elif done < END - timedelta(days=10) and rng.random() < 0.75:
        status = "closed"  # Closed after the customer confirmed, or automatically after 7 days.
    else:
        status = "resolved"
    return Ticket(customer, category, priority, status, code, opened, resolved, hours)


def customer_tickets(rng: random.Random, customer: Customer) -> list[Ticket]:
    """The tickets of one paid customer while it had a subscription (Free has only the community forum)."""
    assert customer.paid_from is not None
    last = END
    if customer.paid_until is not None:
        last = add_months(customer.paid_until, 12 if customer.billing_cycle == "annual" else 1)
    last = min(last, END)
    tickets = []
    for year, month in months_between(customer.paid_from, last):
        rate = TICKETS_PER_MONTH[customer.plan_on(date(year, month, 28))]
        rate *= TICKET_SPIKES.get((year, month), 1.0) * (1 + math.log10(customer.seats) / 4)
        first = max(customer.paid_from, date(year, month, 1))
        end = min(last, date(year, month, calendar.monthrange(year, month)[1]))
        for _ in range(4):
            if rng.random() < rate / 4:
                tickets.append(ticket(rng, customer, random_workday(rng, first, end)))
    return tickets


def make_tickets(rng: random.Random, customers: Sequence[Customer], orders: Sequence[Order]) -> list[Ticket]:
    """All tickets: ordinary ones, and BILL-402 tickets after failed payments."""
    tickets = [
        t for customer in customers if customer.paid_from is not None for t in customer_tickets(rng, customer)
    ]
    for order in orders:
        if order.status == "failed" and rng.random() < 0.5:
            opened = order.order_date + timedelta(days=rng.randint(0, 2))
            if opened <= END:
                tickets.append(ticket(rng, order.customer, opened, "billing", "BILL-402"))
    return tickets


# --- Output -----------------------------------------------------------------------------------------------


def assign_ids(tables: Tables) -> None:
    """Number orders, refunds and tickets in date order (ties by customer, then generation order)."""
    for rows, key, id_attr in (
        (tables.orders, "order_date", "order_id"),
        (tables.refunds, "refund_date", "refund_id"),
        (tables.tickets, "opened_at", "ticket_id"),
    ):
        ranked = sorted(
            enumerate(rows), key=lambda pair: (getattr(pair[1], key), _customer_id(pair[1]), pair[0])
        )
        for number, (_, row) in enumerate(ranked, start=1):
            setattr(row, id_attr, number)


def _customer_id(row: Order | Refund | Ticket) -> int:
    return row.order.customer.customer_id if isinstance(row, Refund) else row.customer.customer_id


def generate(seed: int = SEED) -> Tables:
    """Generate every table from `seed`."""
    rng = random.Random(seed)
    customers = make_customers(rng)
    orders = make_orders(rng, customers)
    refunds = cancellation_refunds(rng, orders)
    refunds += duplicate_charges(rng, orders)
    refunds += other_refunds(rng, orders)
    tables = Tables(customers, orders, refunds, make_tickets(rng, customers, orders))
    assign_ids(tables)
    return tables


HEADERS = {
    "customers": ["customer_id", "name", "email", "plan", "region", "seats", "signup_date", "status"],
    "orders": ["order_id", "customer_id", "plan", "billing_cycle", "amount", "currency", "order_date", "status"],
    "refunds": ["refund_id", "order_id", "customer_id", "amount", "reason", "refund_date", "status"],
    "tickets": [
        "ticket_id", "customer_id", "category", "priority", "status", "error_code", "opened_at", "resolved_at",
        "first_response_hours",
    ],
}  # fmt: skip


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """Write one table: a header line, then the rows; None is written as an empty cell."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def catalog() -> dict[str, object]:
    """The description of the tables, their columns and their joins."""
    return {
        "tables": {
            "customers": {
                "description": "Lumen customers: one row per company workspace, with its current plan. "
                "Synthetic data, as of 2026-10-31.",
                "columns": {
                    "customer_id": "Unique id of the customer",
                    "name": "Company name of the customer",
                    "email": "Contact email address of the customer's billing owner",
                    "plan": "The customer's plan (the last one it had, if churned): free, team, business or enterprise",
                    "region": "The customer's geographic region: us, eu, uk, apac or latam",
                    "seats": "Number of paid seats in the customer's workspace",
                    "signup_date": "Date the customer's workspace was created",
                    "status": "active, or churned if the customer cancelled its subscription or left",
                },
            },
            "orders": {
                "description": "Invoices: one row per subscription charge (monthly or annual renewal) of a paid "
                "customer. Amount is the plan's price per seat times seats. Free customers have no orders.",
                "columns": {
                    "order_id": "Unique id of the order (invoice)",
                    "customer_id": "The customer charged",
                    "plan": "Plan billed by this order: team, business or enterprise",
                    "billing_cycle": "monthly or annual; enterprise is always annual",
                    "amount": "Amount charged, in US dollars",
                    "currency": "Currency of the amount; always usd",
                    "order_date": "Date the order was charged",
                    "status": "paid; failed if the payment was declined (error BILL-402, retried as a new "
                    "order); refunded if fully refunded",
                },
            },
            "refunds": {
                "description": "Refund requests against orders, with the decision under the refund policy.",
                "columns": {
                    "refund_id": "Unique id of the refund request",
                    "order_id": "The order the refund is for",
                    "customer_id": "The customer who asked for the refund",
                    "amount": "Amount requested, in US dollars (paid back only if approved)",
                    "reason": "Why the refund was asked for: cancellation, duplicate_charge, billing_error, "
                    "downgrade or outage_credit",
                    "refund_date": "Date the refund request was made",
                    "status": "approved, rejected, or pending (not decided yet)",
                },
            },
            "tickets": {
                "description": "Support tickets opened by paid customers.",
                "columns": {
                    "ticket_id": "Unique id of the support ticket",
                    "customer_id": "The customer who opened the ticket",
                    "category": "Topic of the ticket: billing, sync, authentication, export, api or other",
                    "priority": "urgent, high, normal or low",
                    "status": "open, resolved, or closed (resolved and closed)",
                    "error_code": "Lumen error code reported in the ticket, such as SYNC-409, ERR-4012, "
                    "BILL-402 or E-AUTH-017; empty if none",
                    "opened_at": "Date the ticket was opened",
                    "resolved_at": "Date the ticket was resolved; empty while it is open",
                    "first_response_hours": "Hours from opening to the first response from support",
                },
            },
        },
        "joins": [
            {"left": "orders.customer_id", "right": "customers.customer_id"},
            {"left": "refunds.order_id", "right": "orders.order_id"},
            {"left": "refunds.customer_id", "right": "customers.customer_id"},
            {"left": "tickets.customer_id", "right": "customers.customer_id"},
        ],
    }


def write_tables(tables: Tables, directory: Path = TABLES_DIR) -> dict[str, int]:
    """Write the CSV files and catalog.json; returns the row count of each table."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = {
        "customers": [c.row() for c in tables.customers],
        "orders": [o.row() for o in sorted(tables.orders, key=lambda o: o.order_id)],
        "refunds": [r.row() for r in sorted(tables.refunds, key=lambda r: r.refund_id)],
        "tickets": [t.row() for t in sorted(tables.tickets, key=lambda t: t.ticket_id)],
    }
    for name, table_rows in rows.items():
        write_csv(directory / f"{name}.csv", HEADERS[name], table_rows)
    (directory / "catalog.json").write_text(json.dumps(catalog(), indent=2) + "\n", encoding="utf-8")
    return {name: len(table_rows) for name, table_rows in rows.items()}


def main() -> None:
    counts = write_tables(generate())
    for name, count in counts.items():
        print(f"{name}: {count} rows")
    print(f"written to {TABLES_DIR}")


if __name__ == "__main__":
    main()
