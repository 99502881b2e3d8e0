"""Package shape: the ROS-free core never imports rclpy, and `pip install .` gives a working `dynofa`."""
from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(REPO / 'dynofa_ros')], prefix='dynofa_ros.'):
        if not info.name.startswith(('dynofa_ros.nodes', 'dynofa_ros.msg')):
            names.append(info.name)
    return sorted(names)


def test_core_modules_import_without_rclpy():
    modules = _core_modules()
    assert 'dynofa_ros.engine.pool' in modules and 'dynofa_ros.manager.policy' in modules
    code = ('import importlib, sys\n'
            f'for name in {modules!r}:\n'
            '    importlib.import_module(name)\n'
            'bad = sorted(m for m in sys.modules if m.split(".")[0] in ("rclpy", "rosidl_runtime_py"))\n'
            'assert not bad, bad\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['PYTHONPATH'] = str(REPO)  # the source folder: the core must not need the generated messages
    result = subprocess.run([sys.executable, '-c', code], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_pip_install_gives_the_dynofa_command(tmp_path):
    source, target = tmp_path / 'src', tmp_path / 'site'  # a copy: pip writes build/ and egg-info beside it
    shutil.copytree(REPO / 'dynofa_ros', source / 'dynofa_ros', ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copy(REPO / 'setup.py', source / 'setup.py')
    build = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation',
                            '--target', str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    assert (target / 'dynofa_ros' / 'engine' / 'pool.py').is_file()
    assert not (target / 'dynofa_ros' / 'nodes').exists()
    env = {**os.environ, 'PYTHONPATH': str(target)}
    run = subprocess.run([sys.executable, '-c', 'from dynofa_ros.cli import main; main()', '--help'],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    for command in ('profile', 'search', 'plot', 'train'):
        assert command in run.stdout

