"""Tests of livingai.adapters.openai_agents, run in .venv-openai-agents (scripts/test)."""
