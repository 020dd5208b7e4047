"""The feedback loop: one event vocabulary, the durable event store, retraining, versions."""
