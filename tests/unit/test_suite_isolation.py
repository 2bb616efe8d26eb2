"""The suite leaves a user's checkout alone: its outputs go to a folder of its own, and
a change to the checkout's reports/, predictions/, mlflow.db or .mlcycle/ is seen."""

from mlcycle import config
from mlcycle.monitoring import report
from tests.conftest import users_work


def test_the_suites_relative_outputs_and_state_are_outside_the_checkout():
    root = config.PROJECT_ROOT
    assert not config.output_root().is_relative_to(root)
    assert not config.STATE_DIR.is_relative_to(root)
    assert not config.from_root("reports/").is_relative_to(root)
    assert not report.output_folder("reports/", "isolation-check").is_relative_to(root)


def test_a_changed_added_or_removed_file_of_the_users_work_is_seen(tmp_path):
    (tmp_path / "reports" / "m").mkdir(parents=True)
    page = tmp_path / "reports" / "m" / "latest.html"
    page.write_text("the user's page")
    (tmp_path / "src.py").write_text("not the user's work")
    before = users_work(tmp_path)
    assert set(before) == {"reports/m/latest.html"}
    page.write_text("a test's page!")
    assert users_work(tmp_path) != before
    (tmp_path / "mlflow.db").write_bytes(b"")
    assert "mlflow.db" in users_work(tmp_path)
    page.unlink()
    assert "reports/m/latest.html" not in users_work(tmp_path)
