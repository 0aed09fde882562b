"""Traffic simulation: `scenario` (the SUMO scenario), `loops` (induction-loop replay) and
`evaluation` (fixed vs actuated vs citygrid's advice)."""
