"""Simulators and real data: SimBench profiles, pvlib weather, SUMO, model training, evaluation reports."""
