"""Traffic simulation: `scenario` (the project's SUMO grid), `loops` (induction-loop replay), `networks`
(any SUMO scenario as an evaluation case), `metrics` (RESCO's trip statistics), `evaluation` (every
control on the same demand and seeds) and `report`."""
