"""The I/O edges: the embedded broker, Kafka clients (confluent-kafka) and the Tansu workaround."""
