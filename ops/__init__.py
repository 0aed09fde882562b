"""Operator tooling: deploying edge agents to devices."""
