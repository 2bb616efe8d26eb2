from mlflow.models import set_model
from mlcycle.network import NetworkPyfunc
set_model(NetworkPyfunc())
