"""agentwatch: monitor AI agents in production.

The package's public surface is the SDK helpers below; the server is the
``agentwatch`` command::

    import agentwatch

    agentwatch.configure(endpoint="http://127.0.0.1:4318", service_name="support-agent")
    with agentwatch.session("conv-42", user_id="u-7", intent="refund"):
        with agentwatch.llm_call("gpt-4o-mini", provider="openai") as call:
            call.record(input_tokens=120, output_tokens=30, output_text="...")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("agentwatch")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from agentwatch.evaluate.base import EvalResult
from agentwatch.evaluate.catalogue import evaluator
from agentwatch.evaluate.session import SessionView
from agentwatch.sdk import configure, llm_call, session, tool_call

__all__ = ["__version__", "configure", "EvalResult", "evaluator", "llm_call", "session", "SessionView", "tool_call"]
