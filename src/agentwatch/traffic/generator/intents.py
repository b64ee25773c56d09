"""What sessions of the support agent do: the intents, their shares, and one scenario per intent.

Each scenario (refund, order status, billing, plan change, cancellation, policy
question) plays a session's turns on a :class:`_Conversation`: what the
customer asks, which articles the agent retrieves and which tools it calls,
and what it answers from their results; ``_closing`` adds an optional
follow-up question and thanks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from agentwatch.traffic.generator.build import _Conversation, random_token
from agentwatch.traffic.generator.world import _PLANS, Amount, Day, Fact, _add_business_days, _money

#: Intents and their share of sessions.
INTENTS: tuple[tuple[str, float], ...] = (
    ("order_status", 0.26),
    ("refund", 0.22),
    ("policy_question", 0.16),
    ("billing", 0.14),
    ("plan_change", 0.12),
    ("cancel_subscription", 0.10),
)


_Scenario = Callable[[_Conversation], None]
_FollowUp = tuple[tuple[str, ...], tuple[str, ...], str, dict[str, Fact]]


def _closing(conv: _Conversation, follow_ups: Sequence[_FollowUp], *, failed: bool = False) -> None:
    """Optional follow-up question answered from the knowledge base, then optional thanks."""
    rng = conv.rng
    if failed:
        conv.goal_failed = True
        if rng.random() < 0.4:
            conv.turn(rng.choice(("Ok, I'll try again later.", "That's annoying. I'll check back tomorrow.")))\
                .reply("Sorry for the trouble, {name}. We're on it.", name=conv.customer.first_name)
        return
    if follow_ups and rng.random() < 0.45:
        questions, doc_ids, answer, facts = rng.choice(follow_ups)
        question = rng.choice(questions)
        turn = conv.turn(question)
        turn.retrieve(question, doc_ids)
        turn.reply(answer, **facts)
        if rng.random() >= 0.5:
            return
    elif rng.random() >= 0.25:
        return
    conv.turn(rng.choice(("Thanks!", "Great, thank you.", "Perfect, thanks for the help.", "ok thx"))).reply(
        rng.choice(("You're welcome, {name}! Anything else I can help with?",
                    "Happy to help, {name}. Have a great day!")), name=conv.customer.first_name)


_REFUND_FOLLOW_UPS: tuple[_FollowUp, ...] = (
    (("How long until I see the money?", "When will the refund show up on my card?"), ("kb-refund-policy",),
     "Refunds go back to your original payment method within 5 business days of approval.", {}),
    (("Do I have to send the item back?", "How do I return it?"), ("kb-returns",),
     "Yes, please print the prepaid return label from your order page. Return shipping is free for orders "
     "over {threshold}; otherwise a {fee} label fee is deducted from the refund.",
     {"threshold": Amount(Decimal("50.00")), "fee": Amount(Decimal("6.95"))}),
)
_SHIPPING_FOLLOW_UPS: tuple[_FollowUp, ...] = (
    (("Can I change the delivery address?", "I moved, can you send it somewhere else?"), ("kb-shipping",),
     "Once an order has shipped the address can't be changed, but the carrier can hold it at a pickup point "
     "for you.", {}),
    (("How much is express shipping?", "Is there a faster shipping option next time?"), ("kb-shipping",),
     "Express delivery takes 1-2 business days and costs {express}. Standard delivery is {standard}, free for "
     "orders over {free}.", {"express": Amount(Decimal("12.00")), "standard": Amount(Decimal("4.99")),
                             "free": Amount(Decimal("35.00"))}),
)
_BILLING_FOLLOW_UPS: tuple[_FollowUp, ...] = (
    (("What happens if I pay late?", "Is there a late fee?"), ("kb-billing",),
     "Invoices are due within 14 days; after the due date a late fee of {fee} applies.",
     {"fee": Amount(Decimal("5.00"))}),
    (("How do I update my card?", "Can I pay with PayPal instead?"), ("kb-payment-methods",),
     "You can update your payment method under Account > Billing; we accept Visa, Mastercard, American "
     "Express and PayPal, and the new method is used from the next invoice.", {}),
)
_PLAN_FOLLOW_UPS: tuple[_FollowUp, ...] = (
    (("Is it cheaper if I pay yearly?", "What does the yearly option cost?"), ("kb-plans",),
     "Yes, yearly billing costs ten months' price: {basic} for Basic, {plus} for Plus and {pro} for Pro.",
     {"basic": Amount(Decimal("99.90")), "plus": Amount(Decimal("199.90")), "pro": Amount(Decimal("399.90"))}),
)
_CANCEL_FOLLOW_UPS: tuple[_FollowUp, ...] = (
    (("Can I come back later?", "What if I change my mind?"), ("kb-cancellation",),
     "Of course. If you reactivate within 90 days, all your data will still be there.", {}),
)


def _refund(conv: _Conversation) -> None:
    rng = conv.rng
    late = rng.random() < conv.rates.out_of_policy
    order = conv.order(status="delivered", delivered_days_ago=rng.randint(35, 80) if late else rng.randint(1, 25))
    item = order["items"][0]["name"]
    order_id = order["order_id"]
    reason = rng.choice(("arrived broken", "doesn't work", "is not what I ordered", "arrived damaged"))
    turn = conv.turn(rng.choice((
        "Hi, I'd like a refund for order {order_id}. The {item} {reason}.",
        "The {item} from order {order_id} {reason}. Can I get my money back?",
        "refund please, order {order_id}, the {item} {reason}",
    )).format(order_id=order_id, item=item, reason=reason))
    turn.retrieve(f"refund {item} {reason}", ("kb-refund-policy", "kb-returns"))
    looked = turn.tool("lookup_order", {"order_id": order_id}, order)
    if not looked.ok:
        turn.apologize("order system")
        return _closing(conv, (), failed=True)
    amount = Decimal(str(order["total"]))
    delivered = date.fromisoformat(order["delivered_on"])
    if late and rng.random() >= conv.rates.policy_violation:
        turn.reply("I'm sorry, {name}: order {order_id} was delivered on {delivered}, which is outside our 30-day "
                   "refund window, so I can't refund it. If the {item} is faulty, its manufacturer's warranty "
                   "may still cover it.", name=conv.customer.first_name, order_id=order_id,
                   delivered=Day(delivered), item=item)
        return _closing(conv, ())
    expected = _add_business_days(conv.today, 5)
    refund = turn.tool("refund_api", {"order_id": order_id, "amount": _money(amount), "reason": reason}, {
        "status": "refunded", "refund_id": "rf_" + random_token(rng, 12), "order_id": order_id,
        "amount": _money(amount), "currency": "USD", "expected_by": expected.isoformat()}, maskable=True)
    if late:
        turn.violation("refund_window_30_days",
                       f"refund of order {order_id} delivered {(conv.today - delivered).days} days ago")
    if refund.ok:
        turn.reply(rng.choice((
            "Done! I've refunded {amount} for order {order_id}. It will be back on your original payment method "
            "by {expected}.",
            "I'm sorry about the {item}. A refund of {amount} for order {order_id} has been issued and should "
            "reach you by {expected}.",
        )), amount=Amount(amount), order_id=order_id, expected=Day(expected), item=item)
    elif refund.masked:
        turn.reply("Your refund of {amount} for order {order_id} has been issued.", amount=Amount(amount),
                   order_id=order_id)
    else:
        turn.apologize("payments system")
        return _closing(conv, (), failed=True)
    _closing(conv, _REFUND_FOLLOW_UPS)


def _order_status(conv: _Conversation) -> None:
    rng = conv.rng
    status = rng.choices(("processing", "shipped", "delivered"), weights=(2, 6, 2))[0]
    order = conv.order(status=status, delivered_days_ago=rng.randint(0, 3))
    order_id = order["order_id"]
    turn = conv.turn(rng.choice((
        "Where is my order {order_id}?", "Hi, any update on order {order_id}?",
        "My order {order_id} hasn't arrived yet, what's going on?",
    )).format(order_id=order_id))
    looked = turn.tool("lookup_order", {"order_id": order_id}, order)
    if not looked.ok:
        turn.apologize("order system")
        return _closing(conv, (), failed=True)
    if status == "processing":
        turn.reply("Order {order_id} is still being prepared. We expect it to arrive by {eta}.",
                   order_id=order_id, eta=Day(date.fromisoformat(order["estimated_delivery"])))
    elif status == "delivered":
        turn.reply("Order {order_id} was delivered on {delivered} by {carrier} (tracking {tracking}). If you can't "
                   "find it, let me know.", order_id=order_id,
                   delivered=Day(date.fromisoformat(order["delivered_on"])), carrier=order["carrier"],
                   tracking=order["tracking_number"])
    else:
        eta = date.fromisoformat(order["estimated_delivery"])
        tracking = {"tracking_number": order["tracking_number"], "carrier": order["carrier"],
                    "status": "in_transit", "last_scan": rng.choice(("Louisville, KY", "Memphis, TN", "Leipzig, DE",
                                                                     "Chicago, IL")),
                    "last_scan_on": (conv.today - timedelta(days=rng.randint(0, 1))).isoformat(),
                    "estimated_delivery": eta.isoformat()}
        tracked = turn.tool("track_shipment", {"tracking_number": order["tracking_number"]}, tracking)
        if tracked.ok:
            turn.reply("Your order {order_id} shipped on {shipped} with {carrier} and was last scanned in {scan}. "
                       "It should arrive by {eta}.", order_id=order_id,
                       shipped=Day(date.fromisoformat(order["shipped_on"])), carrier=order["carrier"],
                       scan=tracking["last_scan"], eta=Day(eta))
        else:
            turn.reply("Order {order_id} shipped on {shipped} with {carrier} (tracking {tracking}); the estimated "
                       "delivery is {eta}. I couldn't get the latest scan from the carrier just now.",
                       order_id=order_id, shipped=Day(date.fromisoformat(order["shipped_on"])),
                       carrier=order["carrier"], tracking=order["tracking_number"], eta=Day(eta))
    _closing(conv, _SHIPPING_FOLLOW_UPS)


def _billing(conv: _Conversation) -> None:
    rng = conv.rng
    customer = conv.customer
    price = _PLANS[customer.plan]
    issued = conv.last_billing_date()
    due = issued + timedelta(days=14)
    invoice: dict[str, Any] = {
        "invoice_id": f"INV-{issued:%Y%m}-{rng.randint(1000, 9999)}", "customer_id": customer.customer_id,
        "plan": customer.plan, "amount": _money(price), "currency": "USD", "issued_on": issued.isoformat(),
        "due_on": due.isoformat(), "status": "paid" if due < conv.today else "open"}
    turn = conv.turn(rng.choice((
        "Why was I charged {price} this month?", "Can you send me my latest invoice?",
        "I see a charge of {price} from Acme, what is it for?",
    )).format(price=Amount(price)))
    turn.retrieve("invoice charge billing", ("kb-billing", "kb-plans"))
    got = turn.tool("get_invoice", {"customer_id": customer.customer_id}, invoice)
    if not got.ok:
        turn.apologize("billing system")
        return _closing(conv, (), failed=True)
    turn.reply(rng.choice((
        "That's your {plan} plan: invoice {invoice_id} for {amount}, issued on {issued} and due on {due}. You can "
        "download it under Account > Billing.",
        "Invoice {invoice_id} is for your {plan} subscription, {amount}. It was issued on {issued}; payment is "
        "due by {due}.",
    )), plan=customer.plan, invoice_id=invoice["invoice_id"], amount=Amount(price), issued=Day(issued),
        due=Day(due))
    _closing(conv, _BILLING_FOLLOW_UPS)


def _subscription(conv: _Conversation) -> dict[str, Any]:
    customer = conv.customer
    return {"customer_id": customer.customer_id, "plan": customer.plan, "status": "active",
            "price": _money(_PLANS[customer.plan]), "currency": "USD",
            "renews_on": conv.renewal_date().isoformat()}


def _plan_change(conv: _Conversation) -> None:
    rng = conv.rng
    customer = conv.customer
    target = rng.choice([plan for plan in _PLANS if plan != customer.plan])
    upgrade = _PLANS[target] > _PLANS[customer.plan]
    turn = conv.turn(rng.choice((
        "I'd like to switch to the {target} plan.", "Can you move me to {target}?",
        "How do I change my plan to {target}?",
    )).format(target=target))
    turn.retrieve(f"change plan {target}", ("kb-plan-changes", "kb-plans"))
    subscription = _subscription(conv)
    got = turn.tool("get_subscription", {"customer_id": customer.customer_id}, subscription)
    if not got.ok:
        turn.apologize("subscription system")
        return _closing(conv, (), failed=True)
    renews = conv.renewal_date()
    days_left = (renews - conv.today).days
    difference = _PLANS[target] - _PLANS[customer.plan]
    prorated = (difference * days_left / 30).quantize(Decimal("0.01")) if upgrade else Decimal("0.00")
    effective = conv.today if upgrade else renews
    result = {"customer_id": customer.customer_id, "plan": target, "previous_plan": customer.plan,
              "price": _money(_PLANS[target]), "effective_on": effective.isoformat(),
              "prorated_charge": _money(prorated)}
    changed = turn.tool("change_plan", {"customer_id": customer.customer_id, "plan": target}, result,
                        maskable=True)
    if changed.ok and upgrade:
        turn.reply("Done, you're now on {target} at {price} per month, effective {effective}. A prorated charge of "
                   "{prorated} for the rest of this billing period will appear on your next invoice.",
                   target=target, price=Amount(_PLANS[target]), effective=Day(effective), prorated=Amount(prorated))
    elif changed.ok:
        turn.reply("All set: you'll move from {current} to {target} ({price} per month) on {effective}, your next "
                   "renewal date. Until then you keep {current}.", current=customer.plan, target=target,
                   price=Amount(_PLANS[target]), effective=Day(effective))
    elif changed.masked:
        turn.reply("Your plan has been changed to {target}.", target=target)
    else:
        turn.apologize("subscription system")
        return _closing(conv, (), failed=True)
    _closing(conv, _PLAN_FOLLOW_UPS)


def _cancel(conv: _Conversation) -> None:
    rng = conv.rng
    customer = conv.customer
    turn = conv.turn(rng.choice((
        "Please cancel my subscription.", "I want to cancel my {plan} plan.",
        "How do I cancel? I don't use Acme {plan} anymore.",
    )).format(plan=customer.plan))
    turn.retrieve("cancel subscription", ("kb-cancellation",))
    got = turn.tool("get_subscription", {"customer_id": customer.customer_id}, _subscription(conv))
    if not got.ok:
        turn.apologize("subscription system")
        return _closing(conv, (), failed=True)
    until = conv.renewal_date()
    result = {"customer_id": customer.customer_id, "status": "cancelled", "plan": customer.plan,
              "access_until": until.isoformat(), "refund": 0}
    cancelled = turn.tool("cancel_subscription", {"customer_id": customer.customer_id}, result, maskable=True)
    if cancelled.ok:
        turn.reply(rng.choice((
            "Your {plan} subscription is cancelled. You keep access until {until} and won't be charged again.",
            "Done, {name}. {plan} is cancelled as of today; you can keep using it until {until}.",
        )), plan=customer.plan, until=Day(until), name=customer.first_name)
    elif cancelled.masked:
        turn.reply("Your {plan} subscription has been cancelled.", plan=customer.plan)
    else:
        turn.apologize("subscription system")
        return _closing(conv, (), failed=True)
    _closing(conv, _CANCEL_FOLLOW_UPS)


_POLICY_QUESTIONS: tuple[tuple[tuple[str, ...], tuple[str, ...], str, dict[str, Fact]], ...] = (
    (("What's your return policy?", "Can I return something I bought last week?"), ("kb-refund-policy", "kb-returns"),
     "You can return items within 30 days of delivery. Return shipping is free for orders over {threshold}; "
     "otherwise a {fee} label fee is deducted from your refund.",
     {"threshold": Amount(Decimal("50.00")), "fee": Amount(Decimal("6.95"))}),
    (("How much is express shipping?", "How fast can you deliver?"), ("kb-shipping",),
     "Express delivery takes 1-2 business days and costs {express}; standard delivery takes 3-5 business days "
     "and costs {standard}, free over {free}.",
     {"express": Amount(Decimal("12.00")), "standard": Amount(Decimal("4.99")), "free": Amount(Decimal("35.00"))}),
    (("How much does Pro cost?", "What are your plans?"), ("kb-plans",),
     "Basic is {basic}, Plus {plus} and Pro {pro} per month.",
     {"basic": Amount(Decimal("9.99")), "plus": Amount(Decimal("19.99")), "pro": Amount(Decimal("39.99"))}),
    (("Is there a late fee?", "When do I have to pay my invoice?"), ("kb-billing",),
     "Invoices are due within 14 days of being issued, and a late fee of {fee} applies after the due date.",
     {"fee": Amount(Decimal("5.00"))}),
)


def _policy_question(conv: _Conversation) -> None:
    rng = conv.rng
    questions, doc_ids, answer, facts = rng.choice(_POLICY_QUESTIONS)
    question = rng.choice(questions)
    turn = conv.turn(question)
    turn.retrieve(question, doc_ids)
    turn.reply(answer, **facts)
    _closing(conv, _BILLING_FOLLOW_UPS if "kb-billing" in doc_ids else _SHIPPING_FOLLOW_UPS)


_SCENARIOS: dict[str, _Scenario] = {
    "refund": _refund,
    "order_status": _order_status,
    "billing": _billing,
    "plan_change": _plan_change,
    "cancel_subscription": _cancel,
    "policy_question": _policy_question,
}
