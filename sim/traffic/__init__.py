"""Traffic simulation: SUMO scenarios, induction-loop replays and the controller evaluation."""
