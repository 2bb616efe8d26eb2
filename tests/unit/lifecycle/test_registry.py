"""What loading a model checks of the environment it lands in."""

import sys
from importlib import metadata

from mlcycle.lifecycle.registry import requirement_mismatches


def model_dir(tmp_path, requirements: str, python: str):
    (tmp_path / "requirements.txt").write_text(requirements)
    (tmp_path / "python_env.yaml").write_text(f"python: {python}\nbuild_dependencies:\n- pip\n")
    return tmp_path


def test_a_model_logged_here_matches_what_is_installed(tmp_path):
    running = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    pins = "".join(f"{name}=={metadata.version(name)}\n" for name in ("mlflow", "numpy", "pandas"))
    assert requirement_mismatches(model_dir(tmp_path, pins, running)) == []


def test_other_pins_a_missing_package_and_another_python_are_each_one_line(tmp_path):
    folder = model_dir(
        tmp_path,
        "# a comment\n-r other.txt\nnumpy==1.0\nno-such-package-here==1.2\n"
        'pandas==0.1; python_version < "3"\n',
        "3.8.10",
    )
    assert requirement_mismatches(folder) == [
        f"numpy (installed: {metadata.version('numpy')}, logged: 1.0)",
        "no-such-package-here (installed: none, logged: 1.2)",
        f"python (running: {sys.version_info.major}.{sys.version_info.minor}, logged: 3.8.10)",
    ]


def test_a_model_without_requirements_says_nothing(tmp_path):
    assert requirement_mismatches(tmp_path) == []
