"""Runtime resource manager (ROS-free): chooses sub-network x graph variant per workload and DVFS levels."""
from dynofa_ros.manager.policy import (  # noqa: F401
    FrequencyChoice, FrequencyDomain, PlatformState, PolicyConfig, PolicyDecision, ResourcePolicy, SubnetChoice,
    Target, UnknownWorkload, WorkloadFeedback)
