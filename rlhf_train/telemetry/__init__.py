"""Telemetry: the event schema, the emitter and its sinks, the run directory."""
