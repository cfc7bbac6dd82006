"""The runtime layer: recovery today; durable runs, replay and costs land here. Uses the
engine through its public methods only."""
