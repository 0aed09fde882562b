"""The traffic closed loop's stream side: `advice` (River forecasts + Webster plans), `advisor`
(the Kafka→MQTT process) and its command."""
