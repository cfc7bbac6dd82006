"""livingai under CrewAI (`pip install "livingai[crewai]"`): crews kicked off as durable
runs, their LLM calls recorded and served on resume, their tools given write-ahead intent.
See CrewAIAdapter; flows' @persist on any livingai store: LivingAIFlowPersistence."""

from .adapter import CrewAIAdapter
from .flows import LivingAIFlowPersistence
from .llm import RecordingLLM
from .tools import RecordingTool

__all__ = ["CrewAIAdapter", "LivingAIFlowPersistence", "RecordingLLM", "RecordingTool"]
