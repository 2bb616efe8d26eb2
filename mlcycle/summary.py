"""Print what the pipeline produced and how to look at it (the end of `make run`)."""

from __future__ import annotations

import mlflow

from mlcycle import config, registry


def ui_hint(tracking_uri: str, experiment_id: str = "", run_id: str = "") -> str:
    """How to open the runs: a tracking server is already a web page (the run's own page
    when known); a local store needs `mlflow ui` pointed at it."""
    if tracking_uri.startswith(("http://", "https://")):
        url = tracking_uri.rstrip("/")
        if experiment_id and run_id:
            url += f"/#/experiments/{experiment_id}/runs/{run_id}"
        return url
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def lines(model_name: str = config.DEFAULT_MODEL_NAME) -> list[str]:
    uri = config.tracking_uri()
    mlflow.set_tracking_uri(uri)
    out = [f"tracking store: {uri}"]
    for alias in (config.CHAMPION, config.CHALLENGER, config.PREVIOUS):
        version = registry.version_for_alias(model_name, alias)
        if version is not None:
            family = version.tags.get("mlcycle.family", "?")
            out.append(
                f"{alias:>10}: models:/{model_name}@{alias} = version {version.version} ({family})"
            )
    latest = config.REPORTS_DIR / model_name / "latest.html"
    if latest.exists():
        out.append(f"report: {latest}")
    hint = ui_hint(uri)
    out += [
        f"inspect: {hint}" if hint.startswith("mlflow ") else f"inspect: open {hint} in a browser",
        f"serve:   mlflow models serve -m models:/{model_name}@champion --env-manager local"
        " --port 5001   (or: make serve)",
    ]
    return out


if __name__ == "__main__":
    print("\n".join(lines()))
