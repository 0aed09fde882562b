"""The traffic closed loop's stream side: signal advice from forecast flows."""
