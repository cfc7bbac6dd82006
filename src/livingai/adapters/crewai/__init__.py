"""livingai under CrewAI (`pip install "livingai[crewai]"`): crews kicked off as durable
runs, their LLM calls recorded and served on resume, their tools given write-ahead intent.
See CrewAIAdapter."""

from .adapter import CrewAIAdapter
from .llm import RecordingLLM
from .tools import RecordingTool

__all__ = ["CrewAIAdapter", "RecordingLLM", "RecordingTool"]
