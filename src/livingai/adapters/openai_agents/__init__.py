"""The OpenAI Agents SDK on livingai (`pip install "livingai[openai-agents]"`): durable
runs whose recorded model turns and tool calls are served on resume (OpenAIAgentsAdapter)."""

from .adapter import OpenAIAgentsAdapter
from .approvals import PendingApproval

__all__ = ["OpenAIAgentsAdapter", "PendingApproval"]
