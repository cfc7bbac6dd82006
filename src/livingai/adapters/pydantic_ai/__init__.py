"""livingai under Pydantic AI (`pip install "livingai[pydantic-ai]"`): a durable execution
engine with no server. See LivingAIDurability."""

from .durability import LivingAIDurability

__all__ = ["LivingAIDurability"]
