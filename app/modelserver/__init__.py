"""modelship's inference server: an Open Inference Protocol (KServe V2) REST API on ONNX Runtime.

A request runs one way: ``http`` (Starlette routes and the error mapping) -> ``dataplane`` (which
model, ready or not, metrics) -> ``protocol`` (decodes V2 JSON) -> ``predictor`` (checks the model's
signature, runs ONNX Runtime) -> ``protocol`` (encodes the answer). ``manifest`` is the model
directory contract, ``tensors`` the datatypes as numpy, ``settings`` the environment, with
``metrics`` and ``logs``; ``python -m modelserver`` starts uvicorn. Only ``http`` knows the web
framework.
"""

__version__ = "0.1.0"
