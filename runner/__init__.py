"""runner: durable autonomous agent turns on Redis + RQ."""
