"""Judging controllers on a modelled platform that the policy never sees (world.py), with scenario
traces (scenarios.py), the alternatives a user would pick (alternatives.py) and the closed loop
(harness.py). Nothing under dynofa_ros/manager or dynofa_ros/platform may import this package."""
