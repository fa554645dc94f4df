"""Regenerates examples/models/sklearn-iris/model.joblib: the same model as KServe's
gs://kfserving-examples/models/sklearn/1.0/model (an SVC fitted on the iris dataset).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install scikit-learn joblib
    /tmp/venv/bin/python examples/models/generate.py
"""

from pathlib import Path

import joblib
from sklearn import datasets, svm

iris = datasets.load_iris()
model = svm.SVC(gamma="scale")
model.fit(iris.data, iris.target)
out = Path(__file__).parent / "sklearn-iris" / "model.joblib"
out.parent.mkdir(parents=True, exist_ok=True)
joblib.dump(model, out)
print(f"wrote {out}: predictions for two flowers: {model.predict([[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]])}")
