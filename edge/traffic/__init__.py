"""The intersection's device side: `phases` (the light's layout), `detectors` (counting approaches),
`controller` (running advice within safety bounds, fallback) and `intersection` (the device agent)."""
