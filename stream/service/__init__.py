"""The live service (`rmm-stream run`): Kafka / Event Hubs consumer group -> pipeline."""
