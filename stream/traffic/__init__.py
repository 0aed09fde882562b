"""The traffic closed loop's stream side: `advice` (River forecasts of each green's demand, turned into
green ceilings), `advisor` (the Kafka→MQTT process) and its command."""
