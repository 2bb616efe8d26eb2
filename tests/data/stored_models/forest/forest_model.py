from mlflow.models import set_model
from mlcycle.served_forest import ForestPyfunc
set_model(ForestPyfunc())
