"""LangGraph on livingai: `LivingAISaver`, a checkpointer over any livingai store, and
`LangGraphAdapter`, which records a graph's model and tool calls in the same log.

Needs the `langgraph` extra: `pip install "livingai[langgraph]"`.
"""

from livingai import MissingExtraError

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtraError(
        'livingai.adapters.langgraph needs LangGraph: pip install "livingai[langgraph]"'
    ) from exc

from .adapter import LangGraphAdapter
from .saver import LivingAISaver
from .serde import SafeSerializer, UnsafeValueError

__all__ = ["LangGraphAdapter", "LivingAISaver", "SafeSerializer", "UnsafeValueError"]
