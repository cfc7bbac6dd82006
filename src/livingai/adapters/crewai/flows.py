"""LivingAIFlowPersistence: CrewAI's `FlowPersistence` for `@persist`, on any livingai
store. A flow's state after each method, and the context of a pending human feedback,
are kept in the same append-only log as livingai's runs, durably when the call returns.

Flow `<uuid>` is execution `flow:<uuid>`. Nothing stored is changed or deleted: each call
appends a version of one of two MEMORY nodes (these names are data):

    flow:<uuid>/state      save_state: output {"method": the method just completed,
                           "state": the state as JSON}; load_state reads the newest
    flow:<uuid>/feedback   save_pending_feedback: output {"context": the
                           PendingFeedbackContext as a dict, "state": ...};
                           clear_pending_feedback: output None
"""

from __future__ import annotations

from typing import Any

from crewai.flow.async_feedback.types import PendingFeedbackContext
from crewai.flow.persistence.base import FlowPersistence
from pydantic import BaseModel, PrivateAttr

from livingai import (
    CheckpointEngine,
    CheckpointStore,
    ConfigError,
    ExecutionNode,
    NodeType,
    Status,
    open_store,
)
from livingai.adapters.home import Home
from livingai.adapters.recordings import plain

EXECUTION_PREFIX = "flow:"


class LivingAIFlowPersistence(FlowPersistence):
    """`@persist(LivingAIFlowPersistence("sqlite:///flows.db"))`: a store URL, a store, or
    an engine used by nothing else. CrewAI calls persistence from its flows' threads and
    loops, so the engine runs on a loop of this object's own, in a thread of its own;
    `close()` closes it (and the store, unless an engine was given)."""

    persistence_type: str = "LivingAIFlowPersistence"
    _engine: CheckpointEngine = PrivateAttr()
    _owns_store: bool = PrivateAttr()
    _home: Home = PrivateAttr()

    def __init__(self, store: str | CheckpointStore | CheckpointEngine, **fields: Any) -> None:
        super().__init__(**fields)
        if isinstance(store, str):
            store = open_store(store)
        if isinstance(store, CheckpointEngine):
            self._engine, self._owns_store = store, False
        elif isinstance(store, CheckpointStore):
            self._engine, self._owns_store = CheckpointEngine(store), True
        else:
            raise ConfigError(
                "LivingAIFlowPersistence keeps flows in a store URL, a CheckpointStore or a "
                f"CheckpointEngine; got {store!r}"
            )
        self._home = Home("livingai-crewai-flows")
        self._home.start()

    def __repr__(self) -> str:
        return f"LivingAIFlowPersistence({self._engine.store!r})"

    @property
    def engine(self) -> CheckpointEngine:
        return self._engine

    def close(self) -> None:
        """Close the engine (and its store, when made here) and the loop thread."""
        if self._owns_store:
            self._home.block(self._engine.close)
        self._home.stop()

    # -- FlowPersistence ---------------------------------------------------------------

    def init_db(self) -> None:
        """Nothing to do: every livingai store makes its schema on first use."""

    def save_state(
        self, flow_uuid: str, method_name: str, state_data: dict[str, Any] | BaseModel
    ) -> None:
        self._save(flow_uuid, "state", {"method": method_name, "state": _state(state_data)})

    def load_state(self, flow_uuid: str) -> dict[str, Any] | None:
        saved = self._newest(flow_uuid, "state")
        state = saved.get("state") if isinstance(saved, dict) else None
        return state if isinstance(state, dict) else None

    def save_pending_feedback(
        self,
        flow_uuid: str,
        context: PendingFeedbackContext,
        state_data: dict[str, Any] | BaseModel,
    ) -> None:
        self.save_state(flow_uuid, context.method_name, state_data)
        pending = {"context": plain(context.to_dict()), "state": _state(state_data)}
        self._save(flow_uuid, "feedback", pending)

    def load_pending_feedback(
        self, flow_uuid: str
    ) -> tuple[dict[str, Any], PendingFeedbackContext] | None:
        pending = self._newest(flow_uuid, "feedback")
        if not isinstance(pending, dict) or not isinstance(pending.get("context"), dict):
            return None
        state = pending.get("state")
        return (state if isinstance(state, dict) else {}), PendingFeedbackContext.from_dict(
            pending["context"]
        )

    def clear_pending_feedback(self, flow_uuid: str) -> None:
        if self._newest(flow_uuid, "feedback") is not None:
            self._save(flow_uuid, "feedback", None)

    # -- the log -----------------------------------------------------------------------

    def _save(self, flow_uuid: str, name: str, output: Any) -> None:
        execution_id = _execution_id(flow_uuid)
        node = ExecutionNode(
            id=f"{execution_id}/{name}",
            execution_id=execution_id,
            type=NodeType.MEMORY,
            status=Status.SUCCESS,
            output=output,
            metadata={"kind": f"flow {name}", "step": f"flow {name}"},
        )
        self._home.block(lambda: self._engine.save(node, durable=True))

    def _newest(self, flow_uuid: str, name: str) -> Any:
        """The newest version's output, read from the store (not a cache: another
        process may have saved since)."""
        node_id = f"{_execution_id(flow_uuid)}/{name}"
        record = self._home.block(lambda: self._engine.store.read(node_id))
        return None if record is None else record.to_node().output


def _execution_id(flow_uuid: str) -> str:
    if not isinstance(flow_uuid, str) or not flow_uuid:
        raise ConfigError(f"a flow's uuid must be a non-empty string; got {flow_uuid!r}")
    return f"{EXECUTION_PREFIX}{flow_uuid}"


def _state(state: dict[str, Any] | BaseModel) -> Any:
    """A flow's state as JSON holds it (a structured state by its fields)."""
    return plain(state.model_dump(mode="json") if isinstance(state, BaseModel) else state)
