"""One module per entry point: everything that step does with MLflow.

Each is shaped like `etl`: a parameters dataclass (the one home of the step's defaults),
pure preparation over DataFrames, the logging, and `execute`, which runs both in the
active run. Steps import the library (`mlcycle.*`); the library never imports steps."""
