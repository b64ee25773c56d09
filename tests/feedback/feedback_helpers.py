"""What the feedback tests share: a shop's refund rules and refund conversations in the OpenAI format."""

from __future__ import annotations

import json
from typing import Any

#: A refund above the order total breaks refund_limit; a failed tool call breaks tool_use.
CONFIG = """\
project: shop
evaluators:
  - name: refund_limit
    kind: rule
    rule: numeric_bound
    params: {tool: refund_api, field: amount, max_from: {tool: lookup_order, field: total, match: [order_id]}}
    threshold: 1.0
    owner: payments-oncall
  - name: tool_use
    kind: rule
    rule: tool_error
    threshold: 1.0
    owner: platform
"""


def refund_messages(order: str, total: float, amount: float, answer: str = "Done.",
                    request: str | None = None) -> list[dict[str, Any]]:
    """A user asks for a refund; the agent looks the order up, refunds ``amount`` and answers."""
    def call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]}

    return [
        {"role": "user", "content": request or f"Refund order {order} please"},
        call("a", "lookup_order", {"order_id": order}),
        {"role": "tool", "tool_call_id": "a", "content": json.dumps({"order_id": order, "total": total})},
        call("b", "refund_api", {"order_id": order, "amount": amount}),
        {"role": "tool", "tool_call_id": "b", "content": json.dumps({"status": "refunded"})},
        {"role": "assistant", "content": answer},
    ]
