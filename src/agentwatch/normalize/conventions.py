"""Which instrumentation family wrote a span, what kind of span it is, and the alias tables.

Detection follows the ingest conventions, section 2: OpenInference
(``openinference.span.kind``), then OTel GenAI (``gen_ai.operation.name``),
then OpenLLMetry (``traceloop.*``, ``llm.request.type``, flattened
``gen_ai.prompt.N.*``), then a guess from the span name. A span may match
several families; for the kind the earliest match wins.

The alias tuples list attribute names newest first (section 6.2).
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

OPENINFERENCE = "openinference"
OTEL_GENAI = "otel_genai"
OPENLLMETRY = "openllmetry"
UNKNOWN = "unknown"

OPENINFERENCE_KINDS = {
    "LLM": "llm",
    "EMBEDDING": "embedding",
    "RETRIEVER": "retrieval",
    "RERANKER": "retrieval",
    "TOOL": "tool",
    "AGENT": "agent",
    "GUARDRAIL": "guardrail",
    "CHAIN": "chain",
    "PROMPT": "chain",
    "EVALUATOR": "evaluator",
}

OPERATION_KINDS = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "fetch_response": "llm",
    "llm_request": "llm",
    "embeddings": "embedding",
    "retrieval": "retrieval",
    "search_memory": "retrieval",
    "vector_db_retrieve": "retrieval",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "apply_guardrail": "guardrail",
    "guardrail.run": "guardrail",
    "invoke_workflow": "chain",
    "plan": "chain",
    "execute_task": "chain",
    "create_memory": "other",
    "update_memory": "other",
    "upsert_memory": "other",
    "delete_memory": "other",
    "create_memory_store": "other",
    "delete_memory_store": "other",
}

TRACELOOP_KINDS = {
    "workflow": "chain",
    "task": "chain",
    "agent": "agent",
    "tool": "tool",
    "unknown": "other",
}

REQUEST_TYPE_KINDS = {
    "chat": "llm",
    "completion": "llm",
    "embedding": "embedding",
    "rerank": "retrieval",
}

VECTOR_DBS = frozenset(
    {"chroma", "chromadb", "pinecone", "qdrant", "weaviate", "milvus", "lancedb", "marqo", "pgvector"}
)

#: Span-name prefixes (``chat gpt-4o``) and suffixes (``support.agent``) for the last-resort guess.
NAME_PREFIX_KINDS = (
    ("chat ", "llm"),
    ("text_completion ", "llm"),
    ("generate_content ", "llm"),
    ("embeddings ", "embedding"),
    ("retrieval ", "retrieval"),
    ("execute_tool ", "tool"),
    ("invoke_agent", "agent"),
    ("create_agent", "agent"),
    ("invoke_workflow", "chain"),
    ("apply_guardrail", "guardrail"),
)
NAME_SUFFIX_KINDS = (
    (".workflow", "chain"),
    (".task", "chain"),
    (".agent", "agent"),
    (".tool", "tool"),
    (".guardrail", "guardrail"),
    (".chat", "llm"),
    (".completion", "llm"),
    (".response", "llm"),
    (".embeddings", "embedding"),
)

_OPENLLMETRY_PREFIXES = ("traceloop.", "gen_ai.prompt.0.", "gen_ai.completion.0.")

SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "traceloop.association.properties.session_id")
USER_KEYS = ("user.id", "enduser.id", "traceloop.association.properties.user_id")
AGENT_NAME_KEYS = ("gen_ai.agent.name", "agent.name")
AGENT_ID_KEYS = ("gen_ai.agent.id",)
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
MODEL_REQUESTED_KEYS = ("gen_ai.request.model", "llm.request.model_name")
MODEL_FALLBACK_KEYS = ("llm.model_name", "embedding.model_name", "reranker.model_name")
MODEL_RESPONDED_KEYS = ("gen_ai.response.model", "llm.response.model_name", "llm.model_name")
TOKENS_IN_KEYS = (
    "gen_ai.usage.input_tokens",
    "llm.token_count.prompt",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
)
TOKENS_OUT_KEYS = (
    "gen_ai.usage.output_tokens",
    "llm.token_count.completion",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
)
CACHE_READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.cache_read_input_tokens",
)
CACHE_WRITE_KEYS = (
    "gen_ai.usage.cache_write.input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
)
REASONING_KEYS = (
    "gen_ai.usage.reasoning.output_tokens",
    "llm.token_count.completion_details.reasoning",
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
)
TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name")
TOOL_CALL_ID_KEYS = ("gen_ai.tool.call.id", "tool.id", "tool_call.id")
FINISH_REASON_KEYS = (
    "gen_ai.response.finish_reasons",
    "llm.finish_reason",
    "gen_ai.response.finish_reason",
    "gen_ai.response.stop_reason",
)

#: Lower-cased provider values that are not the semconv's spelling.
PROVIDER_SYNONYMS = {
    "az.ai.openai": "azure.ai.openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "vertexai": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "google": "gcp.gen_ai",
    "gemini": "gcp.gemini",
    "aws": "aws.bedrock",
    "amazon": "aws.bedrock",
    "bedrock": "aws.bedrock",
    "watsonx": "ibm.watsonx.ai",
    "moonshot": "moonshot_ai",
}


def conventions_of(attrs: dict[str, Any]) -> list[str]:
    """The families whose marker attributes the span carries, in detection order."""
    found: list[str] = []
    if "openinference.span.kind" in attrs:
        found.append(OPENINFERENCE)
    if "gen_ai.operation.name" in attrs:
        found.append(OTEL_GENAI)
    if "llm.request.type" in attrs or any(map(str.startswith, attrs, repeat(_OPENLLMETRY_PREFIXES))):
        found.append(OPENLLMETRY)
    return found or [UNKNOWN]


def kind_of(attrs: dict[str, Any], name: str) -> str:
    """The normalized kind (section 2 table), guessing from the span name last."""
    get = attrs.get
    value = get("openinference.span.kind")
    if isinstance(value, str):
        kind = OPENINFERENCE_KINDS.get(value.upper())
        if kind is not None:
            return kind
    value = get("gen_ai.operation.name")
    if isinstance(value, str):
        kind = OPERATION_KINDS.get(value.lower())
        if kind is not None:
            return kind
    value = get("traceloop.span.kind")
    if isinstance(value, str):
        kind = TRACELOOP_KINDS.get(value.lower())
        if kind is not None:
            return kind
    value = get("llm.request.type")
    if isinstance(value, str):
        kind = REQUEST_TYPE_KINDS.get(value.lower())
        if kind is not None:
            return kind
    value = get("db.system.name") or get("db.system")
    if isinstance(value, str) and value.lower() in VECTOR_DBS:
        return "retrieval"
    return kind_from_name(name)


def kind_from_name(name: str) -> str:
    """Guess a kind from a span name such as ``chat gpt-4o`` or ``refund.tool``."""
    for prefix, kind in NAME_PREFIX_KINDS:
        if name.startswith(prefix):
            return kind
    for suffix, kind in NAME_SUFFIX_KINDS:
        if name.endswith(suffix):
            return kind
    return "other"


def operation_of(attrs: dict[str, Any]) -> str | None:
    """The raw operation: ``gen_ai.operation.name``, else the family's span-kind attribute."""
    get = attrs.get
    for key in ("gen_ai.operation.name", "openinference.span.kind", "traceloop.span.kind", "llm.request.type"):
        value = get(key)
        if isinstance(value, str) and value:
            return value
    return None


def provider_name(value: str) -> str:
    """Lower-case a provider value and map it to the semconv spelling."""
    lowered = value.strip().lower()
    return PROVIDER_SYNONYMS.get(lowered, lowered)


def name_subject(name: str) -> str | None:
    """The subject in a span name: ``invoke_agent X`` / ``execute_tool X`` / ``X.agent`` -> X."""
    head, sep, rest = name.partition(" ")
    if sep and head in ("invoke_agent", "create_agent", "execute_tool", "invoke_workflow"):
        return rest.strip() or None
    if head in ("invoke_agent", "create_agent", "execute_tool", "invoke_workflow"):
        return None
    for suffix in (".agent", ".tool", ".workflow", ".task"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or None
    return name or None
