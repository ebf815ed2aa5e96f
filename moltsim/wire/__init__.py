"""The wire: MQTT topics, the envelope gateway, the engine server, the agent client, brokers."""
