"""Sources yield batches of raw messages: files and stdin here; Kafka and Event Hubs later."""
