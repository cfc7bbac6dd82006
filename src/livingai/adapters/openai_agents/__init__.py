"""The OpenAI Agents SDK on livingai (`pip install "livingai[openai-agents]"`): durable
runs whose recorded model turns and tool calls are served on resume (OpenAIAgentsAdapter),
streamed (StreamedRun) or stopped for a person's approval (PendingApproval), and the SDK's
sessions on any livingai store (LivingAISession)."""

from .adapter import OpenAIAgentsAdapter
from .approvals import PendingApproval
from .session import INTERRUPTED_OUTPUT, LivingAISession
from .streaming import StreamedRun

__all__ = [
    "INTERRUPTED_OUTPUT",
    "LivingAISession",
    "OpenAIAgentsAdapter",
    "PendingApproval",
    "StreamedRun",
]
