"""Experiment implementations per method family: train, constrain, evaluate (one signature each)."""
