"""The intersection's device side: `phases` (the light's layout, read from its own program), `detectors`
(its lane-area zones), `pressure` (the per-second decision rules), `controller` (running the light
within its safety bounds, advice, fallback) and `intersection` (the device agent)."""
